// The run manifest (<run>/manifest.json): one record per stage run, the link between stages.
// Records are opened and closed by locked, atomic rewrites; output entries go to per-rank
// append-only journals in between (Note [manifest journals]), so recording an output is O(1)
// and concurrent ranks and Slurm array tasks never lose one. Paths inside are relative to the run.
#pragma once
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/fs.hpp"

namespace mcm::manifest {
namespace stdfs = std::filesystem;
using json = nlohmann::json;

// Note [manifest journals]
// manifest.json is rewritten whole (lock, read, modify, temp + fsync + rename) only to open a
// record (begin_record) and to close it (close_record, from StageRun::finish on rank 0).
// Between the two, each process appends its record's output entries to its own journal,
// <run>/manifest.d/<record-id>.rank<R>.jsonl: one line per entry, written with O_APPEND and
// fdatasync'd before the call returns, so an entry is durable as soon as it is recorded and
// costs the same whether it is the 1st or the 100,000th. One writer per file (a record belongs
// to one stage run, a rank is one process), so no lock is needed and no two writers interleave.
//
// A line is {"xxh3":"<16 hex>","entry":<entry>} where the hash is xxh3-64 of the exact bytes of
// <entry>. A crash can tear only the last append, so invalid bytes after the last valid line
// are a torn write: ignored, never misread (the output it named was committed but is not
// recorded, so a resumed run redoes it). An invalid line followed by valid ones is corruption,
// not a crash, and reading the manifest fails with a DataError naming the file and line.
//
// Readers (read(), hence recorded_outputs, StageRun::reusable, verify, show) fold the journals
// of records that are not yet closed into those records' outputs, in (rank, line) order after
// any outputs manifest.json already holds: a killed run's record keeps the outputs its ranks
// recorded, and the next run reuses them. read() lists and reads the journals *before*
// manifest.json, so a close_record racing with it is seen either before (journals folded) or
// after (record closed, leftover journal lines ignored), never as a record without its outputs.
//
// close_record (under the lock, after every rank's last append: StageRun::finish closes the
// journals and barriers first) folds the record's journals into manifest.json (each rank's by
// name, checked against the count of entries that rank appended), marks the record
// "journals": "merged", writes it atomically, then deletes the journals. Journal lines of a
// merged record are never folded again, so a crash between the rewrite and the deletes, or a
// second close_record, adds nothing twice; leftovers are deleted by the next close_record.
// Records that never close (killed runs) keep their journals; they stay small and are read
// like the rest. Appending to a record after it was closed is a programming error (the lines
// would be ignored).

/// Version 2: output entries of open records live in manifest.d journals.
inline constexpr int kSchemaVersion = 2;
/// Folder of the journals, inside the run folder.
inline constexpr const char* kJournalDir = "manifest.d";

/// {"path": relative path, "bytes": size, "checksum": "xxh3:..."} of a file under run_dir.
json file_entry(const stdfs::path& run_dir, const stdfs::path& file);

/// The journal of one record written by one rank (Note [manifest journals]). Opens its file on
/// the first append. Move-only.
class Journal {
 public:
  Journal(const stdfs::path& run_dir, const std::string& record_id, int rank);
  /// Appends one output entry durably: one write and one fdatasync, whatever the journal's length.
  /// After a failed append (a line may be half-written) every later append throws IoError: a
  /// valid line behind a torn one would make the journal unreadable.
  void append(const json& entry);
  /// Closes the file (a later append reopens it); StageRun::finish closes before its barrier.
  void close() noexcept { file_.close(); }
  const stdfs::path& path() const { return path_; }
  /// Entries appended through this object.
  int64_t appended() const { return appended_; }

 private:
  stdfs::path path_;
  fs::AppendFile file_;
  int64_t appended_ = 0;
  bool broken_ = false;
};

/// Path of the journal of (record, rank).
stdfs::path journal_path(const stdfs::path& run_dir, const std::string& record_id, int rank);
/// The encoded journal line of an entry (with its trailing newline).
std::string journal_line(const json& entry);

/// What a journal file holds.
struct JournalContents {
  std::vector<json> entries;  ///< valid lines, in order
  size_t torn_bytes = 0;      ///< bytes after the last valid line (a torn last append), ignored
};
/// Reads a journal: every valid line; a torn tail is counted and ignored; an invalid line
/// followed by a valid one throws DataError (file, line number). A missing file is empty.
JournalContents read_journal(const stdfs::path& file);

class Manifest {
 public:
  explicit Manifest(stdfs::path run_dir);
  const stdfs::path& run_dir() const { return dir_; }
  stdfs::path path() const { return dir_ / "manifest.json"; }
  stdfs::path journal_dir() const { return dir_ / kJournalDir; }

  /// The document with the journals of open records folded in (Note [manifest journals]); an
  /// empty one if there is no manifest yet. Throws DataError if manifest.json or a journal is
  /// corrupt. This is what every reader of outputs uses.
  json read() const;
  /// manifest.json alone, as stored (no journals folded in).
  json read_stored() const;
  /// Applies f to the stored document (journals not folded in) under the lock and writes it
  /// back atomically. Never write a read() result back: closed records are the only place
  /// journal entries may land, and only close_record puts them there.
  void update(const std::function<void(json&)>& f);

  /// Opens a stage record with status "running"; `header` holds config, seeds, world, hosts...
  /// Returns its id.
  std::string begin_record(const std::string& stage, json header);
  /// Appends an output entry (a file_entry plus stage-specific fields) to the record's journal
  /// of `rank`. O(1); opens and closes the journal each call (a StageRun keeps a Journal open).
  void add_output(const std::string& record_id, const json& entry, int rank);
  /// Reopens a record for another attempt at the same work (a requeued Slurm job, a rerun after an
  /// interruption): under the lock, folds its journals into its outputs (once; a killed attempt's
  /// are still open), deletes them, sets status "running", drops "ended", sets the record's
  /// world_size, hosts and slurm to the attempt's and appends `attempt` to its "attempts". Returns
  /// the number of attempts the record now lists.
  size_t reopen_record(const std::string& record_id, const json& attempt);
  /// Sets fields of a record (status, counts, inputs, ended...) by merging `fields` into it.
  void patch_record(const std::string& record_id, const json& fields);
  /// Closes a record: under the lock, folds its journals into its outputs (once), applies f to
  /// the record, writes manifest.json atomically, then deletes the merged journals (and any
  /// left over from closed records). Call after every writer's last append. Idempotent.
  /// `appended[r]` is the number of entries rank r appended (ranks 0..size-1): each journal is
  /// opened by name (a directory listing can be stale on NFS) and a shortfall is a DataError
  /// naming the rank.
  void close_record(const std::string& record_id, const std::function<void(json& record)>& f,
                    const std::vector<int64_t>& appended);

 private:
  stdfs::path dir_;
};

/// The record with this id, or nullptr.
const json* find_record(const json& doc, const std::string& id);
/// Latest output entry per path among records of `stage`. Outputs of running records count:
/// each was added after its file was committed. Each entry carries "reused_from", the id of the
/// record that produced the file (kept from the entry when it was itself reused). Used to skip
/// finished work.
std::map<std::string, json> recorded_outputs(const json& doc, const std::string& stage);

/// Rechecks every recorded file (size and checksum, latest record per path; journal entries of
/// open records included), every stage's latest record status, and journals without a record.
/// An input entry with "kind": "set" names many files under one checksum (a folder of shards, a
/// teacher plus data): it identifies what an output was made from and is not checked as a file.
/// Returns human-readable problems; empty means verified.
std::vector<std::string> verify(const stdfs::path& run_dir);
/// Human summary of the records, or the lineage of one output (its record, inputs, their
/// producers, recursively).
std::string show(const stdfs::path& run_dir, const std::string& output = "");

/// Current UTC time as ISO-8601.
std::string now_iso();

}  // namespace mcm::manifest
