//! The `revkv` command: inspect, maintain and measure a revkv database.

mod bench;
mod demo;
mod heap;
mod ops;
mod progress;
mod txn;

#[global_allocator]
static ALLOCATOR: heap::Counting = heap::Counting;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "revkv",
    version,
    about = "Inspect, maintain and measure a revkv database"
)]
struct Cli {
    /// The database file [default: revkv.db; demo: a temporary file].
    #[arg(long, global = true)]
    db: Option<PathBuf>,
    /// Space quota in bytes (0: none; default: etcd's 2 GiB).
    #[arg(long, global = true)]
    quota_bytes: Option<u64>,
    /// Output format, as etcdctl's `-w`.
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        value_enum,
        default_value = "simple"
    )]
    write_out: ops::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Keys {
    /// The key.
    key: String,
    /// The end of the range (exclusive).
    range_end: Option<String>,
    /// Every key with KEY as a prefix.
    #[arg(long, conflicts_with_all = ["range_end", "from_key"])]
    prefix: bool,
    /// Every key from KEY on.
    #[arg(long, conflicts_with = "range_end")]
    from_key: bool,
}

impl Keys {
    fn range(&self) -> ops::KeyRange {
        ops::KeyRange {
            key: self.key.clone(),
            range_end: self.range_end.clone(),
            prefix: self.prefix,
            from_key: self.from_key,
        }
    }
}

/// `put`, on the command line or in a txn.
#[derive(clap::Args)]
struct PutArgs {
    key: String,
    value: String,
    /// Print the previous key-value.
    #[arg(long)]
    prev_kv: bool,
}

/// `get`'s unary options, on the command line or in a txn.
#[derive(clap::Args)]
struct GetArgs {
    #[command(flatten)]
    keys: Keys,
    /// Read at this revision (0: current).
    #[arg(long, default_value_t = 0)]
    rev: i64,
    /// At most this many keys.
    #[arg(long, default_value_t = 0)]
    limit: i64,
    /// Keys without values.
    #[arg(long)]
    keys_only: bool,
    /// Only the count.
    #[arg(long)]
    count_only: bool,
}

impl GetArgs {
    fn options(&self) -> revkv::mvcc::RangeOptions {
        revkv::mvcc::RangeOptions {
            revision: self.rev,
            limit: self.limit,
            keys_only: self.keys_only,
            count_only: self.count_only,
            ..Default::default()
        }
    }
}

/// `del`, on the command line or in a txn.
#[derive(clap::Args)]
struct DelArgs {
    #[command(flatten)]
    keys: Keys,
    /// Print the deleted key-values.
    #[arg(long)]
    prev_kv: bool,
}

#[derive(Subcommand)]
enum AlarmCommand {
    /// Lists the raised alarms.
    List,
    /// Clears every raised alarm (NOSPACE only once the database has room).
    Disarm,
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Writes a consistent copy of the database to FILE while it stays in
    /// use, then checks the copy.
    Save {
        /// Where the copy goes (replaced if it exists).
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Puts VALUE at KEY.
    Put(PutArgs),
    /// Reads a key or a range.
    Get {
        #[command(flatten)]
        get: GetArgs,
        /// Read as a stream of chunks (one output object per chunk).
        #[arg(long)]
        stream: bool,
        /// Keys per chunk with --stream.
        #[arg(long, default_value_t = 1000)]
        chunk_keys: usize,
        /// About this many bytes per chunk with --stream.
        #[arg(long, default_value_t = 1 << 20)]
        chunk_bytes: usize,
    },
    /// Deletes a key or a range.
    Del(DelArgs),
    /// Runs a transaction read from standard input (etcdctl's format).
    ///
    /// Three blocks separated by an empty line: compares, requests run when
    /// they all hold, requests run otherwise. A compare is
    /// `TARGET("KEY") OP "VALUE"` (TARGET: value, version, create, mod,
    /// lease; OP: =, !=, <, >); a request is a put, get or del line as on the
    /// command line. Example: `mod("k") > "0"`, empty line, `put k "v"`,
    /// empty line, `get k`.
    Txn,
    /// Compacts history below REV.
    Compaction { rev: i64 },
    /// Defragments the file online.
    Defrag,
    /// Revision, compacted revision, sizes, keys, quota, alarms.
    Status,
    /// The hash of the history up to a revision (etcdctl's `endpoint
    /// hashkv`): equal on two stores that hold the same versions.
    Hashkv {
        /// The revision to hash up to (0: the current one).
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
    /// Alarms.
    Alarm {
        #[command(subcommand)]
        command: AlarmCommand,
    },
    /// Verifies every page checksum and every tree and index invariant.
    Check,
    /// Copies every version of a damaged --db file that can still be read
    /// into a new store FILE (revision log rebuilt), checks the copy, and
    /// lists what was lost. The damaged file is only read.
    Salvage {
        /// Where the salvaged store goes (must not exist).
        file: PathBuf,
    },
    /// Snapshots.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Builds a Kubernetes-like keyspace and shows a unary range against a
    /// stream, an overwrite + compaction + defragmentation cycle, and the
    /// quota alarm (a temporary database unless --db is given; kept then).
    Demo {
        /// Keys to load.
        #[arg(long, default_value_t = 200_000)]
        keys: u64,
        /// Bytes per value.
        #[arg(long, default_value_t = 1024)]
        value_bytes: usize,
    },
    /// Runs one benchmark phase and prints one JSON line.
    ///
    /// The etcd peer's phases (../shared/peers): load N VALUE_SIZE, open,
    /// range, first, paged LIMIT, get M, txn M, churn VALUE_SIZE [PROBE]
    /// (PROBE 0: no latency prober beside compaction and defrag); and
    /// revkv's own: stream [CHUNK_KEYS], streams N, watch WATCHERS PUTS
    /// THREADS PACE_MS ROUNDS TOGETHER, large M VALUE_SIZE (puts of
    /// multi-page values after a compaction fragmented the free space),
    /// and churn's first two steps alone: overwrite VALUE_SIZE, compact.
    /// Besides the peer's fields, `written_bytes`: what the phase handed
    /// to write calls (Linux).
    Bench {
        /// The phase.
        phase: String,
        /// The phase's arguments.
        args: Vec<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (quota, w) = (cli.quota_bytes, cli.write_out);
    let db = cli.db.clone().unwrap_or_else(|| PathBuf::from("revkv.db"));
    let result = match cli.command {
        Command::Demo { keys, value_bytes } => demo::run(cli.db.as_deref(), keys, value_bytes),
        Command::Txn => {
            let mut input = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut input)
                .map_err(|e| revkv::Error::InvalidOption(format!("reading standard input: {e}")))
                .and_then(|_| txn::parse(&input))
                .and_then(|req| ops::open(&db, quota, false).and_then(|s| ops::txn(&s, req, w)))
        }
        Command::Snapshot {
            command: SnapshotCommand::Save { file },
        } => ops::open(&db, quota, true).and_then(|s| ops::snapshot_save(&s, &file, w)),
        Command::Bench { phase, args } => bench::run(&db, &phase, &args),
        Command::Put(p) => {
            ops::open(&db, quota, false).and_then(|s| ops::put(&s, &p.key, &p.value, p.prev_kv, w))
        }
        Command::Get {
            get,
            stream,
            chunk_keys,
            chunk_bytes,
        } => ops::open(&db, quota, true).and_then(|s| {
            if stream {
                let opts = revkv::stream::StreamOptions::new()
                    .revision(get.rev)
                    .limit(get.limit.max(0) as u64)
                    .keys_only(get.keys_only)
                    .chunk_keys(chunk_keys)
                    .chunk_bytes(chunk_bytes);
                ops::get_stream(&s, &get.keys.range(), opts, w)
            } else {
                ops::get(&s, &get.keys.range(), get.options(), w)
            }
        }),
        Command::Del(d) => {
            ops::open(&db, quota, false).and_then(|s| ops::del(&s, &d.keys.range(), d.prev_kv, w))
        }
        Command::Compaction { rev } => {
            ops::open(&db, quota, false).and_then(|s| ops::compaction(&s, rev, w))
        }
        Command::Defrag => ops::open(&db, quota, false).and_then(|s| ops::defrag(&s, w)),
        Command::Status => ops::open(&db, quota, true).and_then(|s| ops::status(&s, w)),
        Command::Hashkv { rev } => {
            ops::open(&db, quota, true).and_then(|s| ops::hashkv(&s, &db, rev, w))
        }
        Command::Alarm { command } => match command {
            AlarmCommand::List => ops::open(&db, quota, true).map(|s| ops::alarm_list(&s)),
            AlarmCommand::Disarm => {
                ops::open(&db, quota, false).and_then(|s| ops::alarm_disarm(&s))
            }
        },
        Command::Check => ops::open(&db, quota, true).and_then(|s| ops::check(&s)),
        Command::Salvage { file } => ops::salvage(&db, &file, w),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
