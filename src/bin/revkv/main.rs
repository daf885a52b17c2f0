//! The `revkv` command: inspect, maintain and measure a revkv database.

mod bench;
mod ops;

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
    /// The database file.
    #[arg(long, global = true, default_value = "revkv.db")]
    db: PathBuf,
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
    fn range(self) -> ops::KeyRange {
        ops::KeyRange {
            key: self.key,
            range_end: self.range_end,
            prefix: self.prefix,
            from_key: self.from_key,
        }
    }
}

#[derive(Subcommand)]
enum AlarmCommand {
    /// Lists the raised alarms.
    List,
    /// Clears every raised alarm (NOSPACE only once the database has room).
    Disarm,
}

#[derive(Subcommand)]
enum Command {
    /// Puts VALUE at KEY.
    Put {
        key: String,
        value: String,
        /// Print the previous key-value.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Reads a key or a range.
    Get {
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
    Del {
        #[command(flatten)]
        keys: Keys,
        /// Print the deleted key-values.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Compacts history below REV.
    Compaction { rev: i64 },
    /// Defragments the file online.
    Defrag,
    /// Revision, compacted revision, sizes, keys, quota, alarms.
    Status,
    /// Alarms.
    Alarm {
        #[command(subcommand)]
        command: AlarmCommand,
    },
    /// Verifies every page checksum and every tree and index invariant.
    Check,
    /// Runs one benchmark phase of the etcd peer's workload and prints one
    /// JSON line: load N VALUE_SIZE, open, range, first, paged LIMIT,
    /// get M, txn M, churn VALUE_SIZE.
    Bench {
        /// The phase.
        phase: String,
        /// The phase's arguments.
        args: Vec<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (db, quota, w) = (cli.db, cli.quota_bytes, cli.write_out);
    let result = match cli.command {
        Command::Bench { phase, args } => bench::run(&db, &phase, &args),
        Command::Put {
            key,
            value,
            prev_kv,
        } => ops::open(&db, quota, false).and_then(|s| ops::put(&s, &key, &value, prev_kv, w)),
        Command::Get {
            keys,
            rev,
            limit,
            keys_only,
            count_only,
            stream,
            chunk_keys,
            chunk_bytes,
        } => ops::open(&db, quota, true).and_then(|s| {
            if stream {
                let opts = revkv::stream::StreamOptions::new()
                    .revision(rev)
                    .limit(limit.max(0) as u64)
                    .keys_only(keys_only)
                    .chunk_keys(chunk_keys)
                    .chunk_bytes(chunk_bytes);
                ops::get_stream(&s, &keys.range(), opts, w)
            } else {
                let opts = revkv::mvcc::RangeOptions {
                    revision: rev,
                    limit,
                    keys_only,
                    count_only,
                    ..Default::default()
                };
                ops::get(&s, &keys.range(), opts, w)
            }
        }),
        Command::Del { keys, prev_kv } => {
            ops::open(&db, quota, false).and_then(|s| ops::del(&s, &keys.range(), prev_kv, w))
        }
        Command::Compaction { rev } => {
            ops::open(&db, quota, false).and_then(|s| ops::compaction(&s, rev, w))
        }
        Command::Defrag => ops::open(&db, quota, false).and_then(|s| ops::defrag(&s, w)),
        Command::Status => ops::open(&db, quota, true).and_then(|s| ops::status(&s, w)),
        Command::Alarm { command } => match command {
            AlarmCommand::List => ops::open(&db, quota, true).map(|s| ops::alarm_list(&s)),
            AlarmCommand::Disarm => {
                ops::open(&db, quota, false).and_then(|s| ops::alarm_disarm(&s))
            }
        },
        Command::Check => ops::open(&db, quota, true).and_then(|s| ops::check(&s)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
