// Config binding: core keys are listed once in visit_core(), each section lists its own; readers and writers walk them.
#include "core/config.hpp"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <toml++/toml.h>

#include "core/checksum.hpp"
#include "core/error.hpp"

namespace mcm::config {
namespace {

// Note [one field list]: visit_core() names the core keys and each section's visit() names its
// own. Loading, printing, hashing and the unknown-key check all walk them, so a new field is
// one line in one place.
void visit_core(Config& c, FieldVisitor& v) {
  v("run.dir", c.run.dir);
  v("run.seed", c.run.seed);
  v("run.threads", c.run.threads);
  v("run.log_level", c.run.log_level);

  v("models.autoencoder.kind", c.models.autoencoder.kind);
  v("models.autoencoder.factor", c.models.autoencoder.factor);
  v("models.autoencoder.scaling_factor", c.models.autoencoder.scaling_factor);
  v("models.autoencoder.path", c.models.autoencoder.path);
  v("models.autoencoder.mode", c.models.autoencoder.mode);
  v("models.text_encoder.kind", c.models.text_encoder.kind);
  v("models.text_encoder.vocab", c.models.text_encoder.vocab);
  v("models.text_encoder.max_length", c.models.text_encoder.max_length);
  v("models.text_encoder.dim", c.models.text_encoder.dim);
  v("models.text_encoder.seed", c.models.text_encoder.seed);
  v("models.text_encoder.path", c.models.text_encoder.path);
  v("models.text_encoder.tokenizer", c.models.text_encoder.tokenizer);
  v("models.teacher.kind", c.models.teacher.kind);
  v("models.teacher.path", c.models.teacher.path);
  v("models.teacher.motion_adapter", c.models.teacher.motion_adapter);
  v("models.teacher.beta_schedule", c.models.teacher.beta_schedule);
}

// Forwards every field with "<section>." in front of its key.
class Prefixed final : public FieldVisitor {
 public:
  Prefixed(FieldVisitor& inner, std::string prefix) : inner_(inner), prefix_(std::move(prefix)) {}
  void operator()(const std::string& k, std::string& v) override { inner_(prefix_ + k, v); }
  void operator()(const std::string& k, int64_t& v) override { inner_(prefix_ + k, v); }
  void operator()(const std::string& k, double& v) override { inner_(prefix_ + k, v); }
  void operator()(const std::string& k, bool& v) override { inner_(prefix_ + k, v); }
  void operator()(const std::string& k, std::vector<std::string>& v) override { inner_(prefix_ + k, v); }
  void operator()(const std::string& k, std::vector<int64_t>& v) override { inner_(prefix_ + k, v); }

 private:
  FieldVisitor& inner_;
  std::string prefix_;
};

// Every field of the config: core, then each registered section.
void visit_all(Config& c, FieldVisitor& v) {
  visit_core(c, v);
  for (auto& [name, section] : c.sections()) {
    Prefixed p(v, name + ".");
    section->visit(p);
  }
}

using Factories = std::map<std::string, std::function<std::unique_ptr<SectionBase>()>>;
Factories& factories() {
  static Factories f;  // filled during static initialisation, read afterwards
  return f;
}

// Parsed sources in order (files, then --set overrides). Merging copies nodes and loses their
// source positions, so locations are looked up here: the last source that sets a key wins.
struct Sources {
  std::vector<std::pair<std::string, toml::table>> tables;
  std::string locate(const std::string& key) const {
    for (auto it = tables.rbegin(); it != tables.rend(); ++it) {
      if (auto* n = it->second.at_path(key).node()) {
        const auto& b = n->source().begin;
        if (it->first.rfind("--set", 0) == 0) return it->first;
        return cat(it->first, ":", b.line, ":", b.column);
      }
    }
    return "<config>";
  }
};
std::string where(const Sources& sources, const std::string& key) {
  return cat(sources.locate(key), ": key \"", key, "\"");
}

const char* type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::array: return "array";
    case toml::node_type::table: return "table";
    default: return "date/time";
  }
}

// Reads values from a merged TOML table into the struct, type-checking each one.
struct Reader final : FieldVisitor {
  Reader(const toml::table& r, const Sources& s) : root(r), sources(s) {}
  const toml::table& root;
  const Sources& sources;
  std::set<std::string> known;

  const toml::node* find(const std::string& key) {
    known.insert(key);
    return root.at_path(key).node();
  }
  [[noreturn]] void bad(const toml::node& n, const std::string& key, const char* want) {
    throw ConfigError(cat(where(sources, key), ": expected ", want, ", got ", type_name(n.type())));
  }
  void operator()(const std::string& key, std::string& out) override {
    if (auto* n = find(key)) {
      if (!n->is_string()) bad(*n, key, "string");
      out = n->as_string()->get();
    }
  }
  void operator()(const std::string& key, int64_t& out) override {
    if (auto* n = find(key)) {
      if (!n->is_integer()) bad(*n, key, "integer");
      out = n->as_integer()->get();
    }
  }
  void operator()(const std::string& key, double& out) override {
    if (auto* n = find(key)) {
      if (n->is_integer()) out = static_cast<double>(n->as_integer()->get());
      else if (n->is_floating_point()) out = n->as_floating_point()->get();
      else bad(*n, key, "number");
    }
  }
  void operator()(const std::string& key, bool& out) override {
    if (auto* n = find(key)) {
      if (!n->is_boolean()) bad(*n, key, "boolean");
      out = n->as_boolean()->get();
    }
  }
  void operator()(const std::string& key, std::vector<std::string>& out) override {
    if (auto* n = find(key)) {
      if (!n->is_array()) bad(*n, key, "array of strings");
      out.clear();
      for (auto& e : *n->as_array()) {
        if (!e.is_string()) bad(e, key, "array of strings");
        out.push_back(e.as_string()->get());
      }
    }
  }
  void operator()(const std::string& key, std::vector<int64_t>& out) override {
    if (auto* n = find(key)) {
      if (!n->is_array()) bad(*n, key, "array of integers");
      out.clear();
      for (auto& e : *n->as_array()) {
        if (!e.is_integer()) bad(e, key, "array of integers");
        out.push_back(e.as_integer()->get());
      }
    }
  }
};

struct JsonWriter final : FieldVisitor {
  explicit JsonWriter(nlohmann::json& r) : root(r) {}
  nlohmann::json& root;
  void operator()(const std::string& k, std::string& v) override { put(k, v); }
  void operator()(const std::string& k, int64_t& v) override { put(k, v); }
  void operator()(const std::string& k, double& v) override { put(k, v); }
  void operator()(const std::string& k, bool& v) override { put(k, v); }
  void operator()(const std::string& k, std::vector<std::string>& v) override { put(k, v); }
  void operator()(const std::string& k, std::vector<int64_t>& v) override { put(k, v); }
  template <class T>
  void put(const std::string& key, const T& value) {
    nlohmann::json* cur = &root;
    std::string rest = key;
    for (size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1))
      cur = &(*cur)[rest.substr(0, dot)];
    (*cur)[rest] = value;
  }
};

void collect_leaves(const toml::table& t, const std::string& prefix, std::vector<std::pair<std::string, const toml::node*>>& out) {
  for (auto& [k, v] : t) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (v.is_table()) collect_leaves(*v.as_table(), key, out);
    else out.emplace_back(key, &v);
  }
}

// Deep merge: tables merge key by key, anything else replaces.
void merge_into(toml::table& dst, const toml::table& src) {
  for (auto& [k, v] : src) {
    if (v.is_table()) {
      auto* existing = dst.get(k);
      if (existing && existing->is_table()) {
        merge_into(*existing->as_table(), *v.as_table());
        continue;
      }
    }
    dst.insert_or_assign(k, v);
  }
}

toml::table parse_override(const std::string& spec) {
  auto eq = spec.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(cat("--set \"", spec, "\": expected key=value"));
  std::string key = spec.substr(0, eq), value = spec.substr(eq + 1);
  toml::table leaf;
  // A value that is not valid TOML (a bare path such as runs/x) is taken as a string.
  try {
    toml::table t = toml::parse("v = " + value, std::string_view("--set " + spec));
    leaf.insert("v", *t.get("v"));
  } catch (const toml::parse_error&) {
    leaf.insert("v", value);
  }
  // Build nested tables along the dotted key.
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string p; std::getline(ss, p, '.');) {
    if (p.empty()) throw ConfigError(cat("--set \"", spec, "\": empty component in key"));
    parts.push_back(p);
  }
  toml::table root;
  toml::table* cur = &root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    cur->insert(parts[i], toml::table{});
    cur = cur->get(parts[i])->as_table();
  }
  cur->insert(parts.back(), *leaf.get("v"));
  return root;
}

std::string suggestion(const std::string& key, const std::set<std::string>& known) {
  std::string best;
  size_t best_d = std::string::npos;
  for (auto& k : known) {
    size_t d = edit_distance(key, k);
    if (d < best_d) { best_d = d; best = k; }
  }
  if (best.empty() || best_d > std::max<size_t>(3, key.size() / 3)) return "";
  return cat(" (did you mean \"", best, "\"?)");
}

}  // namespace

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1] ? 1 : 0)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

void register_section(const std::string& name, std::function<std::unique_ptr<SectionBase>()> make) {
  if (name.empty() || name == "run" || name == "models" || !factories().emplace(name, std::move(make)).second)
    throw std::logic_error(cat("config section [", name, "] registered twice or reserved"));
}

std::vector<std::string> registered_sections() {
  std::vector<std::string> out;
  for (auto& [name, f] : factories()) out.push_back(name);
  return out;
}

Config::Config() {
  for (auto& [name, make] : factories()) sections_[name] = make();
}

Config::Config(const Config& o) : run(o.run), models(o.models), sources(o.sources), part(o.part) {
  for (auto& [name, s] : o.sections_) sections_[name] = s->clone();
}

Config& Config::operator=(const Config& o) {
  if (this != &o) *this = Config(o);
  return *this;
}

const SectionBase& Config::section_base(const std::string& name) const {
  auto it = sections_.find(name);
  if (it == sections_.end())
    throw ConfigError(cat("configuration section [", name, "] is not part of this program (registered: ",
                          [] { std::string l; for (auto& n : registered_sections()) l += (l.empty() ? "" : ", ") + n; return l; }(),
                          ")"));
  return *it->second;
}

nlohmann::json Config::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  JsonWriter w(j);
  visit_all(const_cast<Config&>(*this), w);
  return j;
}

namespace {
toml::table json_to_toml(const nlohmann::json& j) {
  toml::table t;
  for (auto& [k, v] : j.items()) {
    if (v.is_object()) t.insert(k, json_to_toml(v));
    else if (v.is_string()) t.insert(k, v.get<std::string>());
    else if (v.is_boolean()) t.insert(k, v.get<bool>());
    else if (v.is_number_integer()) t.insert(k, v.get<int64_t>());
    else if (v.is_number()) t.insert(k, v.get<double>());
    else if (v.is_array()) {
      toml::array a;
      for (auto& e : v) {
        if (e.is_number_integer()) a.push_back(e.get<int64_t>());
        else a.push_back(e.get<std::string>());
      }
      t.insert(k, std::move(a));
    }
  }
  return t;
}
}  // namespace

std::string Config::to_toml() const {
  std::ostringstream os;
  os << json_to_toml(to_json()) << "\n";
  return os.str();
}

std::string Config::hash(const std::vector<std::string>& parts) const {
  nlohmann::json all = to_json();
  if (parts.empty()) {
    for (auto& [name, sec] : sections_)
      if (sec->launch_only()) all.erase(name);
    return checksum::of_bytes(all.dump());
  }
  nlohmann::json sel = nlohmann::json::object();
  for (auto& p : parts) {
    // A key that names nothing would hash as null and silently stop guarding the outputs.
    const nlohmann::json* node = &all;
    for (size_t start = 0; node;) {
      size_t dot = p.find('.', start);
      std::string name = p.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      auto it = node->is_object() ? node->find(name) : node->end();
      node = it != node->end() ? &*it : nullptr;
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    if (!node) {
      std::set<std::string> known;  // every section and key, for the suggestion
      auto walk = [&](auto&& self, const nlohmann::json& j, const std::string& pre) -> void {
        for (auto& [k, v] : j.items()) {
          known.insert(pre + k);
          if (v.is_object()) self(self, v, pre + k + ".");
        }
      };
      walk(walk, all, "");
      throw ConfigError(cat("stage hash: unknown configuration key \"", p, "\"", suggestion(p, known)));
    }
    sel[p] = *node;
  }
  return checksum::of_bytes(sel.dump());
}

Config load(const std::vector<std::filesystem::path>& files, const std::vector<std::string>& overrides) {
  toml::table merged;
  Config cfg;
  Sources sources;
  for (auto& f : files) {
    if (!std::filesystem::exists(f)) throw ConfigError(cat("config file ", f, ": not found"));
    try {
      sources.tables.emplace_back(f.string(), toml::parse_file(f.string()));
      merge_into(merged, sources.tables.back().second);
    } catch (const toml::parse_error& e) {
      const auto& b = e.source().begin;
      throw ConfigError(cat(f.string(), ":", b.line, ":", b.column, ": TOML syntax error: ", e.description()));
    }
    cfg.sources.push_back(f.string());
  }
  for (auto& o : overrides) {
    sources.tables.emplace_back("--set " + o, parse_override(o));
    merge_into(merged, sources.tables.back().second);
    cfg.sources.push_back("--set " + o);
  }
  Reader r(merged, sources);
  visit_all(cfg, r);

  // Unknown keys: collect them all, each with its location and the nearest known key.
  std::vector<std::pair<std::string, const toml::node*>> leaves;
  collect_leaves(merged, "", leaves);
  std::string unknown;
  for (auto& [key, node] : leaves)
    if (!r.known.count(key)) unknown += cat("\n  ", where(sources, key), ": unknown key", suggestion(key, r.known));
  if (!unknown.empty()) throw ConfigError(cat("unknown configuration keys:", unknown));

  validate(cfg);
  return cfg;
}

}  // namespace mcm::config
