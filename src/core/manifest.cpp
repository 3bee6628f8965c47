// Manifest: locked, atomic record updates of manifest.json, the per-rank output journals
// (Note [manifest journals] in manifest.hpp), verification and lineage display.
#include "core/manifest.hpp"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <random>
#include <set>
#include <sstream>
#include <string_view>
#include <tuple>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"

namespace mcm::manifest {

std::string now_iso() {
  auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json file_entry(const stdfs::path& run_dir, const stdfs::path& file) {
  std::error_code ec;
  auto bytes = stdfs::file_size(file, ec);
  if (ec) throw IoError(cat("stat ", file, ": ", ec.message()));
  // Inside the run: relative (the run folder can move). Outside (real input shards): absolute.
  std::string rel = stdfs::relative(stdfs::absolute(file), stdfs::absolute(run_dir), ec).string();
  if (ec || rel.empty() || rel.rfind("..", 0) == 0) rel = stdfs::weakly_canonical(stdfs::absolute(file)).string();
  return json{{"path", rel},
              {"bytes", bytes},
              {"checksum", checksum::of_file(file)}};
}

// ---- journals (Note [manifest journals]) ----

namespace {
constexpr std::string_view kHead = "{\"xxh3\":\"";
constexpr std::string_view kMid = "\",\"entry\":";
constexpr size_t kHexLen = 16;
constexpr size_t kPayloadAt = kHead.size() + kHexLen + kMid.size();
constexpr std::string_view kSuffix = ".jsonl";
constexpr std::string_view kRankTag = ".rank";

/// The entry of a valid line (without its newline), or a discarded json.
json decode_line(std::string_view line) {
  json bad(json::value_t::discarded);
  if (line.size() <= kPayloadAt || line.substr(0, kHead.size()) != kHead ||
      line.substr(kHead.size() + kHexLen, kMid.size()) != kMid || line.back() != '}')
    return bad;
  uint64_t want = 0;
  for (char c : line.substr(kHead.size(), kHexLen)) {
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return bad;
    want = want << 4 | static_cast<uint64_t>(v);
  }
  std::string_view payload = line.substr(kPayloadAt, line.size() - kPayloadAt - 1);
  if (checksum::hash64(payload) != want) return bad;
  json e = json::parse(payload, nullptr, /*allow_exceptions=*/false);
  return e.is_object() ? e : bad;
}

/// A journal file name split into its record id and rank; false if it is not a journal.
bool parse_journal_name(const std::string& name, std::string& id, int& rank) {
  if (name.size() <= kSuffix.size() || name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0)
    return false;
  std::string stem = name.substr(0, name.size() - kSuffix.size());
  size_t at = stem.rfind(kRankTag);
  if (at == std::string::npos || at == 0 || at + kRankTag.size() == stem.size()) return false;
  std::string digits = stem.substr(at + kRankTag.size());
  if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) return false;
  id = stem.substr(0, at);
  rank = std::stoi(digits);
  return true;
}

struct JournalFile {
  std::string id;
  int rank = 0;
  stdfs::path path;
};

/// The journals in dir, sorted by (record id, rank).
std::vector<JournalFile> list_journals(const stdfs::path& dir) {
  std::vector<JournalFile> out;
  for (auto& name : fs::list_dir(dir)) {
    JournalFile j;
    if (parse_journal_name(name, j.id, j.rank)) {
      j.path = dir / name;
      out.push_back(std::move(j));
    }
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return std::tie(a.id, a.rank) < std::tie(b.id, b.rank); });
  return out;
}

bool merged(const json& record) { return record.value("journals", "") == "merged"; }

void append_outputs(json& record, std::vector<json>&& entries) {
  if (!record.contains("outputs") || !record["outputs"].is_array()) record["outputs"] = json::array();
  for (auto& e : entries) record["outputs"].push_back(std::move(e));
}

json* find_mut(json& doc, const std::string& id) {
  for (auto& r : doc["records"])
    if (r.value("id", "") == id) return &r;
  return nullptr;
}
}  // namespace

stdfs::path journal_path(const stdfs::path& run_dir, const std::string& record_id, int rank) {
  return run_dir / kJournalDir / cat(record_id, kRankTag, rank, kSuffix);
}

std::string journal_line(const json& entry) {
  std::string payload = entry.dump();  // compact: no newline inside
  char hex[kHexLen + 1];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(checksum::hash64(payload)));
  std::string line;
  line.reserve(kPayloadAt + payload.size() + 2);
  line.append(kHead).append(hex, kHexLen).append(kMid).append(payload).append("}\n");
  return line;
}

JournalContents read_journal(const stdfs::path& file) {
  JournalContents out;
  std::string text;
  if (!fs::read_text_if_exists(file, text)) return out;  // merged and deleted meanwhile
  size_t pos = 0, line_no = 0, good_end = 0, first_bad = 0;
  for (size_t nl; (nl = text.find('\n', pos)) != std::string::npos; pos = nl + 1) {
    ++line_no;
    json e = decode_line(std::string_view(text).substr(pos, nl - pos));
    if (e.is_discarded()) {
      if (!first_bad) first_bad = line_no;
      continue;
    }
    if (first_bad)
      throw DataError(cat("manifest journal ", file, " line ", first_bad, ": invalid (checksum or format) but followed by ",
                          "valid lines, so not a torn last write: the journal is corrupt. Removing that line drops ",
                          "one recorded output, which the next run then redoes"));
    out.entries.push_back(std::move(e));
    good_end = nl + 1;
  }
  out.torn_bytes = text.size() - good_end;
  return out;
}

Journal::Journal(const stdfs::path& run_dir, const std::string& record_id, int rank)
    : path_(journal_path(run_dir, record_id, rank)) {}

void Journal::append(const json& entry) {
  require<IoError>(!broken_, "manifest journal ", path_, ": an earlier append failed, so nothing more is recorded "
                   "in it (the stage fails; the next run redoes what is not recorded)");
  const std::string line = journal_line(entry);
  try {
    if (!file_.is_open()) {
      stdfs::path dir = path_.parent_path();
      bool existed = stdfs::is_directory(dir);
      fs::make_dirs(dir);
      if (!existed) fs::fsync_dir(dir.parent_path());
      file_ = fs::AppendFile(path_);
    }
    file_.append(line);
  } catch (...) {
    broken_ = true;
    throw;
  }
  ++appended_;
}

// ---- the document ----

Manifest::Manifest(stdfs::path run_dir) : dir_(std::move(run_dir)) {}

json Manifest::read_stored() const {
  auto p = path();
  std::string text;
  if (!fs::read_text_if_exists(p, text)) return json{{"schema_version", kSchemaVersion}, {"records", json::array()}};
  try {
    json doc = json::parse(text);
    require<DataError>(doc.is_object() && doc.contains("records") && doc["records"].is_array(),
                       "no \"records\" array");
    require<DataError>(doc.value("schema_version", 0) <= kSchemaVersion, "schema_version ",
                       doc.value("schema_version", 0), " is newer than this mcm understands (", kSchemaVersion, ")");
    return doc;
  } catch (const std::exception& e) {
    throw DataError(cat("read manifest ", p, ": ", e.what()));
  }
}

json Manifest::read() const {
  // Journals before manifest.json: Note [manifest journals] (racing with close_record).
  std::vector<std::pair<JournalFile, std::vector<json>>> journals;
  for (auto& j : list_journals(journal_dir())) {
    auto contents = read_journal(j.path);
    journals.emplace_back(std::move(j), std::move(contents.entries));
  }
  json doc = read_stored();
  if (journals.empty()) return doc;
  std::map<std::string, json*> by_id;
  for (auto& r : doc["records"]) by_id[r.value("id", "")] = &r;
  for (auto& [j, entries] : journals) {
    auto it = by_id.find(j.id);
    if (it == by_id.end() || merged(*it->second)) continue;  // unknown: verify reports it; merged: leftover
    append_outputs(*it->second, std::move(entries));
  }
  return doc;
}

void Manifest::update(const std::function<void(json&)>& f) {
  fs::make_dirs(dir_);
  fs::FileLock lock(dir_ / "manifest.json.lock");
  json doc = read_stored();
  f(doc);
  doc["schema_version"] = kSchemaVersion;  // an older mcm must not rewrite a run with journals
  fs::write_atomic(path(), doc.dump(2) + "\n");
}

const json* find_record(const json& doc, const std::string& id) {
  for (auto& r : doc.at("records"))
    if (r.value("id", "") == id) return &r;
  return nullptr;
}

std::string Manifest::begin_record(const std::string& stage, json header) {
  std::random_device rd;
  std::string id;
  header["stage"] = stage;
  header["status"] = "running";
  header["started"] = now_iso();
  if (!header.contains("outputs")) header["outputs"] = json::array();
  update([&](json& doc) {
    // Under the lock: an id is never reused, even by array tasks started in the same second
    // (they would share journal files).
    do {
      char suffix[24];
      std::snprintf(suffix, sizeof suffix, "%08x", static_cast<unsigned>(rd()));
      id = cat(stage, "-", now_iso(), "-", suffix);
    } while (find_record(doc, id) != nullptr);
    header["id"] = id;
    doc["records"].push_back(header);
  });
  // The journals' folder exists (durably) before any rank learns the id.
  if (!stdfs::is_directory(journal_dir())) {
    fs::make_dirs(journal_dir());
    fs::fsync_dir(dir_);
  }
  return id;
}

void Manifest::add_output(const std::string& record_id, const json& entry, int rank) {
  Journal(dir_, record_id, rank).append(entry);
}

void Manifest::patch_record(const std::string& record_id, const json& fields) {
  update([&](json& doc) {
    json* r = find_mut(doc, record_id);
    require<DataError>(r != nullptr, "manifest ", path(), ": no record ", record_id);
    r->merge_patch(fields);
  });
}

size_t Manifest::reopen_record(const std::string& record_id, const json& attempt) {
  fs::make_dirs(dir_);
  fs::FileLock lock(dir_ / "manifest.json.lock");
  json doc = read_stored();
  json* r = find_mut(doc, record_id);
  require<DataError>(r != nullptr, "manifest ", path(), ": no record ", record_id);
  std::vector<JournalFile> mine;
  for (auto& j : list_journals(journal_dir()))
    if (j.id == record_id) mine.push_back(j);
  std::sort(mine.begin(), mine.end(), [](const JournalFile& a, const JournalFile& b) { return a.rank < b.rank; });
  if (!merged(*r)) {
    // A killed attempt's entries: folded and marked merged in one atomic write first, so a crash
    // before the journals are gone leaves leftovers that are ignored, never folded twice.
    for (auto& j : mine) append_outputs(*r, read_journal(j.path).entries);
    (*r)["journals"] = "merged";
    fs::write_atomic(path(), doc.dump(2) + "\n");
  }
  bool removed = false;
  for (auto& j : mine) removed |= fs::remove_file(j.path);
  if (removed) fs::fsync_dir(journal_dir());
  // Open again: new journals (fresh files, counted from zero) will be folded in at close.
  r->erase("journals");
  r->erase("ended");
  r->erase("interrupted");  // the attempt that stopped keeps it (StageRun::finish)
  (*r)["status"] = "running";
  for (const char* k : {"world_size", "hosts", "slurm"})
    if (attempt.contains(k)) (*r)[k] = attempt[k];
  if (!r->contains("attempts") || !(*r)["attempts"].is_array()) (*r)["attempts"] = json::array();
  (*r)["attempts"].push_back(attempt);
  const size_t attempts = (*r)["attempts"].size();
  doc["schema_version"] = kSchemaVersion;
  fs::write_atomic(path(), doc.dump(2) + "\n");
  return attempts;
}

void Manifest::close_record(const std::string& record_id, const std::function<void(json& record)>& f,
                            const std::vector<int64_t>& appended) {
  fs::make_dirs(dir_);
  fs::FileLock lock(dir_ / "manifest.json.lock");
  json doc = read_stored();
  json* r = find_mut(doc, record_id);
  require<DataError>(r != nullptr, "manifest ", path(), ": no record ", record_id);
  auto journals = list_journals(journal_dir());
  if (!merged(*r)) {
    // By name, rank by rank (a listing can be stale on NFS): every rank's entries or an error.
    for (int rank = 0; rank < static_cast<int>(appended.size()); ++rank) {
      auto entries = read_journal(journal_path(dir_, record_id, rank)).entries;
      require<DataError>(static_cast<int64_t>(entries.size()) >= appended[static_cast<size_t>(rank)], "manifest ",
                         path(), ": journal of rank ", rank, " for record ", record_id, " holds ", entries.size(),
                         " entries, the rank appended ", appended[static_cast<size_t>(rank)]);
      append_outputs(*r, std::move(entries));
    }
    (*r)["journals"] = "merged";
  }
  f(*r);
  doc["schema_version"] = kSchemaVersion;
  fs::write_atomic(path(), doc.dump(2) + "\n");
  // Durable now: the journals of closed records (this one, leftovers of earlier crashes) go.
  std::set<std::string> closed;
  for (auto& rec : doc["records"])
    if (merged(rec)) closed.insert(rec.value("id", ""));
  bool removed = false;
  for (auto& j : journals)
    if (closed.count(j.id)) removed |= fs::remove_file(j.path);
  if (removed) fs::fsync_dir(journal_dir());
}

std::map<std::string, json> recorded_outputs(const json& doc, const std::string& stage) {
  std::map<std::string, json> out;
  for (auto& r : doc.at("records")) {
    if (r.value("stage", "") != stage) continue;
    for (auto& o : r.value("outputs", json::array())) {
      json e = o;
      if (!e.contains("reused_from")) e["reused_from"] = r.value("id", "");  // the record that produced it
      out[o.at("path").get<std::string>()] = std::move(e);
    }
  }
  return out;
}

std::vector<std::string> verify(const stdfs::path& run_dir) {
  Manifest m(run_dir);
  require<IoError>(stdfs::exists(m.path()), "manifest verify: ", m.path(), " not found");
  // Journals listed first: a journal's record is in manifest.json before the journal exists.
  auto journals = list_journals(m.journal_dir());
  json doc = m.read();
  std::vector<std::string> problems;
  // Journals without a record: their outputs are recorded nowhere a reader looks.
  std::set<std::string> ids;
  for (auto& r : doc["records"]) ids.insert(r.value("id", ""));
  for (auto& j : journals)
    if (!ids.count(j.id))
      problems.push_back(cat(kJournalDir, "/", j.path.filename().string(), ": journal of record ", j.id,
                             ", which the manifest does not hold"));
  // Latest record per stage must be complete.
  std::map<std::string, const json*> latest;
  for (auto& r : doc["records"]) latest[r.value("stage", "?")] = &r;
  for (auto& [stage, r] : latest) {
    std::string st = r->value("status", "?");
    if (st != "complete")
      problems.push_back(cat("stage ", stage, ": latest record ", r->value("id", "?"), " has status \"", st,
                             "\"", r->contains("errors") ? cat(" (", (*r)["errors"].dump(), ")") : std::string()));
  }
  // Every file: the latest recorded entry (outputs, then inputs) must match the disk.
  std::map<std::string, json> files;
  for (auto& r : doc["records"]) {
    for (auto& i : r.value("inputs", json::array()))  // "kind": "set": many files under one checksum, no single file to check
      if (i.contains("checksum") && i.value("kind", "") != "set" && !files.count(i["path"])) files[i["path"]] = i;
    for (auto& o : r.value("outputs", json::array())) files[o["path"]] = o;
  }
  for (auto& [path, e] : files) {
    stdfs::path p = run_dir / path;
    std::error_code ec;
    auto bytes = stdfs::file_size(p, ec);
    if (ec) {
      // Rolling outputs (training checkpoints) are deleted by design once newer ones exist.
      if (e.value("retention", "") != "rolling") problems.push_back(cat(path, ": missing (", ec.message(), ")"));
      continue;
    }
    if (bytes != e.value("bytes", uint64_t{0})) {
      problems.push_back(cat(path, ": size ", bytes, " bytes, recorded ", e.value("bytes", uint64_t{0})));
      continue;
    }
    std::string sum = checksum::of_file(p);
    if (sum != e.value("checksum", "")) problems.push_back(cat(path, ": checksum ", sum, ", recorded ", e.value("checksum", "")));
  }
  return problems;
}

namespace {
void describe(std::ostringstream& os, const json& r, const std::string& indent) {
  os << indent << r.value("stage", "?") << "  " << r.value("status", "?") << "  id " << r.value("id", "?") << "\n";
  os << indent << "  started " << r.value("started", "?") << "  ended " << r.value("ended", "-") << "  world "
     << r.value("world_size", 0) << "  revision " << r.value("code_revision", "?") << "\n";
  if (r.contains("config_hash")) os << indent << "  config " << r["config_hash"].get<std::string>() << "\n";
  if (r.contains("counts")) os << indent << "  counts " << r["counts"].dump() << "\n";
  if (r.contains("skipped") && !r["skipped"].empty()) os << indent << "  skipped " << r["skipped"].dump() << "\n";
  os << indent << "  inputs " << r.value("inputs", json::array()).size() << ", outputs "
     << r.value("outputs", json::array()).size() << "\n";
  if (r.contains("part")) os << indent << "  part " << r["part"].dump() << "\n";
  // Every job that worked on the record (Note [attempts] in stages/stage_run.cpp).
  const json attempts = r.value("attempts", json::array());
  for (size_t a = 0; a < attempts.size(); ++a) {
    const json& at = attempts[a];
    const json sl = at.value("slurm", json::object());
    os << indent << "  attempt " << a + 1 << ": " << at.value("status", "running?") << "  started " << at.value("started", "?")
       << "  ended " << at.value("ended", "-") << "  world " << at.value("world_size", 0);
    if (sl.contains("SLURM_JOB_ID"))
      os << "  slurm job "
         << (sl.contains("SLURM_ARRAY_JOB_ID")
                 ? cat(sl.value("SLURM_ARRAY_JOB_ID", ""), "_", sl.value("SLURM_ARRAY_TASK_ID", ""), " (", sl.value("SLURM_JOB_ID", ""), ")")
                 : sl.value("SLURM_JOB_ID", ""))
         << " restart " << sl.value("SLURM_RESTART_COUNT", "0") << " on "
         << sl.value("SLURM_JOB_NODELIST", "?");
    if (at.contains("interrupted")) os << "  stopped by " << at["interrupted"].dump();
    os << "\n";
  }
  if (r.contains("errors"))
    for (auto& e : r["errors"]) os << indent << "  error: " << (e.is_string() ? e.get<std::string>() : e.dump()) << "\n";
}
}  // namespace

std::string show(const stdfs::path& run_dir, const std::string& output) {
  json doc = Manifest(run_dir).read();
  std::ostringstream os;
  if (output.empty()) {
    os << "manifest " << (run_dir / "manifest.json").string() << ": " << doc.value("records", json::array()).size()
       << " records\n";
    for (auto& sub : doc.value("submissions", json::array())) {  // slurm/submit.sh (mcm slurm submitted)
      os << "submitted " << sub.value("time", "?") << " by " << sub.value("user", "?") << ", config " << sub.value("config_hash", "?")
         << ":";
      const json jobs = sub.value("jobs", json::object());  // named: items() of a temporary would dangle
      for (auto& [k, v] : jobs.items()) os << " " << k << "=" << (v.is_string() ? v.get<std::string>() : v.dump());
      os << "\n";
    }
    for (auto& r : doc["records"]) describe(os, r, "");
    return os.str();
  }
  // Lineage: the latest record that lists `output` among its outputs, then its inputs, recursively.
  std::string rel = output;
  if (stdfs::path(output).is_absolute() || stdfs::exists(output)) {
    std::error_code ec;
    auto r = stdfs::relative(stdfs::absolute(output), stdfs::absolute(run_dir), ec);
    if (!ec && !r.empty() && r.native().rfind("..", 0) != 0) rel = r.string();
  }
  std::set<std::string> seen;
  std::function<void(const std::string&, int)> walk = [&](const std::string& path, int depth) {
    std::string indent(depth * 4, ' ');
    const json* producer = nullptr;
    const json* entry = nullptr;
    for (auto& r : doc["records"]) {
      if (!r.contains("outputs")) continue;
      for (auto& o : r["outputs"])  // by reference into doc: `entry` must outlive the loop
        if (o.value("path", "") == path) { producer = &r; entry = &o; }
    }
    if (!producer) { os << indent << path << "  (external input, no producing record)\n"; return; }
    os << indent << path << "  " << entry->value("checksum", "?") << "  " << entry->value("bytes", uint64_t{0}) << " bytes\n";
    for (auto& [k, v] : entry->items())
      if (k != "path" && k != "checksum" && k != "bytes") os << indent << "  " << k << ": " << v.dump() << "\n";
    os << indent << "produced by:\n";
    describe(os, *producer, indent + "  ");
    if (!seen.insert(producer->value("id", "")).second) return;
    // Per-output lineage: the entry's own "input" when it has one, else all the record's inputs.
    json inputs = entry->contains("input") ? json::array({(*entry)["input"]}) : producer->value("inputs", json::array());
    for (auto& in : inputs) walk(in.is_string() ? in.get<std::string>() : in.value("path", ""), depth + 1);
  };
  walk(rel, 0);
  require<DataError>(!os.str().empty(), "manifest show: ", output, " not recorded in ", run_dir / "manifest.json");
  return os.str();
}

}  // namespace mcm::manifest
