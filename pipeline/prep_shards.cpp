#include "pipeline/prep_shards.hpp"

#include <algorithm>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/hdf5_store.hpp"
#include "models/encoders.hpp"

namespace mcm::stages {
using json = nlohmann::json;
namespace stdfs = std::filesystem;

std::vector<std::string> latent_shard_names(const stdfs::path& prep_dir, const std::string& kind) {
  std::vector<std::string> names;
  if (stdfs::is_directory(prep_dir))
    for (auto& n : fs::list_dir(prep_dir))
      if (n.rfind(kind + "-", 0) == 0 && stdfs::path(n).extension() == ".h5") names.push_back(n);
  std::sort(names.begin(), names.end());
  return names;
}

ShardInfo read_latent_shards(const dist::DistContext& ctx, const stdfs::path& prep_dir, const std::string& stage,
                             const std::string& kind) {
  require<ConfigError>(kind == "video" || kind == "image", stage, ": no shard kind \"", kind, "\"");
  const bool video = kind == "video";
  std::string msg;
  if (ctx.is_root()) {
    try {
      json j{{"shards", json::array()}, {"captions", json::array()}};
      const std::vector<std::string> names = latent_shard_names(prep_dir, kind);
      require<IoError>(!names.empty(), stage, ": no ", kind, " latent shards (prep/", kind, "-*.h5) in ", prep_dir,
                       video ? ": run `mcm prep` first" : ": run `mcm prep` with prep.encode_images = true and image shards");
      std::string sums;
      std::set<std::string> caps;
      for (auto& n : names) {
        io::LatentShardReader r(prep_dir / n);
        if (j["shards"].empty()) {
          for (auto d : r.latent_shape()) j["latent"].push_back(static_cast<int64_t>(d));
          for (auto d : r.text_shape()) j["text"].push_back(static_cast<int64_t>(d));
        }
        for (auto& c : r.strings("caption")) caps.insert(c);
        j["shards"].push_back((prep_dir / n).string());
        sums += n + ":" + checksum::of_file(prep_dir / n) + "\n";
      }
      require<DataError>(j["latent"].size() == (video ? 4u : 3u), stage, ": ", prep_dir / names.front(),
                         " holds latents of rank ", j["latent"].size() + 1, "; ", kind, " latents ",
                         video ? "[N, C, T, H, W]" : "[N, C, H, W]", " expected");
      j["captions"] = caps;
      j["checksum"] = checksum::of_bytes(sums);
      msg = "ok\n" + j.dump();
    } catch (const std::exception& e) {
      msg = cat("error\n", e.what());
    }
  }
  msg = ctx.broadcast(msg);
  if (msg.rfind("error\n", 0) == 0) throw IoError(msg.substr(6));
  json j = json::parse(msg.substr(3));
  ShardInfo s;
  for (auto& p : j["shards"]) s.shards.emplace_back(p.get<std::string>());
  s.latent = j["latent"].get<std::vector<int64_t>>();
  s.text = j["text"].get<std::vector<int64_t>>();
  s.checksum = j["checksum"];
  for (auto& c : j["captions"]) s.captions.insert(c.get<std::string>());
  return s;
}

train::LoaderOptions loader_options(const ShardInfo& info, const train::OptimConfig& optim, const train::TrainSection& engine,
                                    const dist::DistContext& ctx, uint64_t seed, const std::string& stream) {
  train::LoaderOptions lo;
  lo.shards = info.shards;
  lo.global_batch = optim.batch;
  lo.micro_batch = optim.micro_batch;
  lo.rank = ctx.rank();
  lo.world = ctx.world_size();
  lo.seed = seed;
  lo.stream = stream;
  lo.prefetch = static_cast<int>(engine.prefetch);
  lo.preload = engine.preload;
  lo.expect_latent = info.latent;
  lo.expect_text = info.text;
  return lo;
}

void require_text_encoder_fits(const models::TextEncoder& text, const ShardInfo& info, const std::string& stage) {
  require<ConfigError>(text.dim() == info.text[1] && text.max_length() == info.text[0], stage, ": the text encoder (",
                       text.name(), ") makes [", text.max_length(), ", ", text.dim(), "] embeddings but the prep shards hold [",
                       info.text[0], ", ", info.text[1], "]: re-run prep with the same [models.text_encoder]");
}

namespace {
void flatten_json(const json& j, const std::string& prefix, json& out) {
  if (j.is_object()) {
    for (auto& [k, v] : j.items()) flatten_json(v, prefix.empty() ? k : prefix + "." + k, out);
  } else {
    out[prefix] = j;
  }
}
}  // namespace

json training_identity(const config::Config& cfg, const std::string& section, const ShardInfo& info) {
  json full = cfg.to_json(), id = json::object();
  json own = full[section];
  for (auto it = own.begin(); it != own.end();)
    it = it.key().starts_with("eval_") ? own.erase(it) : std::next(it);
  flatten_json(own, section, id);
  flatten_json(full["models"], "models", id);
  id["run.seed"] = full["run"]["seed"];
  id["train.precision"] = full["train"]["precision"];
  id["data.checksum"] = info.checksum;
  return id;
}

}  // namespace mcm::stages
