// Manifest: locked read-modify-write of manifest.json, verification and lineage display.
#include "core/manifest.hpp"

#include <chrono>
#include <ctime>
#include <random>
#include <set>
#include <sstream>

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

Manifest::Manifest(stdfs::path run_dir) : dir_(std::move(run_dir)) {}

json Manifest::read() const {
  auto p = path();
  if (!stdfs::exists(p)) return json{{"schema_version", kSchemaVersion}, {"records", json::array()}};
  std::string text = fs::read_text(p);
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

void Manifest::update(const std::function<void(json&)>& f) {
  fs::make_dirs(dir_);
  fs::FileLock lock(dir_ / "manifest.json.lock");
  json doc = read();
  f(doc);
  fs::write_atomic(path(), doc.dump(2) + "\n");
}

namespace {
json* find_mut(json& doc, const std::string& id) {
  for (auto& r : doc["records"])
    if (r.value("id", "") == id) return &r;
  return nullptr;
}
}  // namespace

const json* find_record(const json& doc, const std::string& id) {
  for (auto& r : doc.at("records"))
    if (r.value("id", "") == id) return &r;
  return nullptr;
}

std::string Manifest::begin_record(const std::string& stage, json header) {
  std::random_device rd;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%06x", rd() & 0xffffff);
  std::string id = cat(stage, "-", now_iso(), "-", suffix);
  header["id"] = id;
  header["stage"] = stage;
  header["status"] = "running";
  header["started"] = now_iso();
  if (!header.contains("outputs")) header["outputs"] = json::array();
  update([&](json& doc) { doc["records"].push_back(header); });
  return id;
}

void Manifest::add_output(const std::string& record_id, const json& entry) {
  update([&](json& doc) {
    json* r = find_mut(doc, record_id);
    require<DataError>(r != nullptr, "manifest ", path(), ": no record ", record_id);
    (*r)["outputs"].push_back(entry);
  });
}

void Manifest::patch_record(const std::string& record_id, const json& fields) {
  update([&](json& doc) {
    json* r = find_mut(doc, record_id);
    require<DataError>(r != nullptr, "manifest ", path(), ": no record ", record_id);
    r->merge_patch(fields);
  });
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
  json doc = m.read();
  std::vector<std::string> problems;
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
    for (auto& i : r.value("inputs", json::array()))
      if (i.contains("checksum") && !files.count(i["path"])) files[i["path"]] = i;
    for (auto& o : r.value("outputs", json::array())) files[o["path"]] = o;
  }
  for (auto& [path, e] : files) {
    stdfs::path p = run_dir / path;
    std::error_code ec;
    auto bytes = stdfs::file_size(p, ec);
    if (ec) { problems.push_back(cat(path, ": missing (", ec.message(), ")")); continue; }
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
}
}  // namespace

std::string show(const stdfs::path& run_dir, const std::string& output) {
  json doc = Manifest(run_dir).read();
  std::ostringstream os;
  if (output.empty()) {
    os << "manifest " << (run_dir / "manifest.json").string() << ": " << doc["records"].size() << " records\n";
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
