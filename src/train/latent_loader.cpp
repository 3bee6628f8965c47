// LatentLoader: the shard index (validated at start), the per-epoch order (Note [loader order] in
// the header) and the one background thread that does all of the loader's HDF5 reading.
#include "train/latent_loader.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <mutex>
#include <numeric>
#include <thread>
#include <unordered_map>

#include "core/checksum.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "io/hdf5_store.hpp"

namespace mcm::train {

// Note [loader thread]
// ~~~~~~~~~~~~~~~~~~~~
// The HDF5 library linked here is the serial build, which is not thread-safe: two threads must
// never be inside it at once. So every HDF5 call the loader makes (opening and validating the
// shards at construction, reading rows, closing files) happens on its one background thread; the
// constructor only waits for that thread's validation result. The thread owns the open readers and
// closes them before it exits. Nothing else in a training process may call HDF5 while a loader
// lives (checkpoints are safetensors, not HDF5), and two loaders (videos, images) each read on
// their own thread, so a process holds at most one loader while training.
// Flow control: the thread produces micro-batch t (the linear index step * accumulation + micro)
// only while t < consumed + max(prefetch, 1 if next() is waiting), so at most max(prefetch, 1)
// batches are held besides the one returned, and prefetch 0 reads on demand. Each batch carries
// the generation it was started under; restore() bumps the generation, so a batch in flight is
// dropped instead of delivered out of place. A read error ends the thread; next() returns the
// batches already read, then rethrows it.

namespace {

std::vector<int64_t> to_i64(const std::vector<hsize_t>& v) { return {v.begin(), v.end()}; }

int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

struct Shard {
  std::filesystem::path path;
  int64_t rows = 0;
  int64_t first = 0;  ///< global index of its first row
};

/// Open readers for the most recently used shards (bounded: a data set may have thousands).
class ReaderCache {
 public:
  explicit ReaderCache(size_t capacity) : capacity_(capacity) {}
  const io::LatentShardReader& get(size_t shard, const std::filesystem::path& path) {
    for (size_t i = 0; i < open_.size(); ++i) {
      if (open_[i].first != shard) continue;
      std::rotate(open_.begin() + i, open_.begin() + i + 1, open_.end());  // most recent last
      return *open_.back().second;
    }
    if (open_.size() == capacity_) open_.erase(open_.begin());
    open_.emplace_back(shard, std::make_unique<io::LatentShardReader>(path));
    return *open_.back().second;
  }

 private:
  size_t capacity_;
  std::vector<std::pair<size_t, std::unique_ptr<io::LatentShardReader>>> open_;
};

constexpr size_t kOpenShards = 64;

// float16 -> float32 on this thread: Tensor::to() would start torch's intra-op (OpenMP) pool,
// whose spinning threads compete with the training step for the same cores.
void widen(const uint16_t* in, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(c10::Half(in[i], c10::Half::from_bits()));
}

}  // namespace

std::vector<int64_t> epoch_permutation(uint64_t seed, const std::string& stream, int64_t epoch, int64_t items) {
  std::vector<int64_t> perm(static_cast<size_t>(items));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  rng::Stream s(rng::key(seed, stream, static_cast<uint64_t>(epoch), "permutation"));
  s.shuffle(perm.begin(), perm.end());
  return perm;
}

struct LatentLoader::Impl {
  explicit Impl(LoaderOptions opts) : o(std::move(opts)) {}

  LoaderOptions o;
  int64_t accum = 0;
  std::string who;  ///< "latent loader (rank r)", the prefix of every message

  // The index: written by the thread before init_done is set, read-only afterwards.
  std::vector<Shard> shards;
  std::vector<int64_t> latent, text;
  int64_t rows = 0, n_items = 0;
  /// With key groups: item i is rows group_rows[group_start[i] .. group_start[i + 1]); without
  /// (both empty), item i is global row i.
  std::vector<int64_t> group_start, group_rows;
  std::string fingerprint;

  // Shared with the thread, under m.
  mutable std::mutex m;
  std::condition_variable cv;
  bool init_done = false, stop = false, waiting = false;
  std::exception_ptr init_error, error;
  int64_t consume_t = 0, produce_t = 0;
  uint64_t gen = 0;
  std::deque<Batch> ready;
  std::thread thread;

  // Thread-only.
  int64_t perm_epoch = -1;
  std::vector<int64_t> perm;
  std::vector<uint16_t> half_row;  ///< one row as stored
  /// With o.preload: every global row's latents and text (as stored), caption and key.
  std::vector<uint16_t> mem_latent, mem_text;
  std::vector<std::string> mem_caption, mem_key;

  void check_options();
  void build_index();
  void scan_shard(size_t s, const io::LatentShardReader& r);
  int64_t pick_row(int64_t epoch, int64_t item) const;
  Batch produce(int64_t t, ReaderCache& cache);
  void run();
};

void LatentLoader::Impl::check_options() {
  who = cat("latent loader (rank ", o.rank, ")");
  require<ConfigError>(!o.shards.empty(), who, ": no shards given (did the prep stage write any?)");
  require<ConfigError>(o.world >= 1 && o.rank >= 0 && o.rank < o.world, who, ": rank ", o.rank, " of world ", o.world);
  require<ConfigError>(o.global_batch > 0 && o.micro_batch > 0, who, ": global batch ", o.global_batch,
                       " and micro_batch ", o.micro_batch, " must be positive");
  const int64_t per_micro = o.micro_batch * o.world;
  require<ConfigError>(o.global_batch % per_micro == 0, who, ": global batch ", o.global_batch,
                       " is not a multiple of micro_batch ", o.micro_batch, " x ", o.world, " ranks (= ", per_micro,
                       " samples per micro-step)");
  require<ConfigError>(o.prefetch >= 0, who, ": prefetch ", o.prefetch, " is negative");
  require<ConfigError>(o.expect_latent.empty() || o.expect_latent.size() == 3 || o.expect_latent.size() == 4, who,
                       ": expected latent shape ", shape_str(o.expect_latent), " is neither [C, H, W] nor [C, T, H, W]");
  require<ConfigError>(o.expect_text.empty() || o.expect_text.size() == 2, who, ": expected text shape ",
                       shape_str(o.expect_text), " is not [L, D]");
  accum = o.global_batch / per_micro;
}

// Reads one shard's shapes (and keys, for grouping) and appends its rows and items.
void LatentLoader::Impl::scan_shard(size_t s, const io::LatentShardReader& r) {
  const auto& p = shards[s].path;
  const int64_t n = static_cast<int64_t>(r.size());
  require<DataError>(n > 0, who, ": shard ", p.string(), " has 0 rows");
  auto lat = to_i64(r.latent_shape()), txt = to_i64(r.text_shape());
  require<DataError>(lat.size() == 3 || lat.size() == 4, who, ": shard ", p.string(), " has latents ",
                     shape_str(lat), " per sample: neither an image [C, H, W] nor a video [C, T, H, W]");
  require<DataError>(txt.size() == 2, who, ": shard ", p.string(), " has text_emb ", shape_str(txt),
                     " per sample, not [L, D]");
  if (s == 0) {
    require<DataError>(o.expect_latent.empty() || lat == o.expect_latent, who, ": expected latent shape ",
                       shape_str(o.expect_latent), ", found ", shape_str(lat), " in shard ", p.string());
    require<DataError>(o.expect_text.empty() || txt == o.expect_text, who, ": expected text_emb shape ",
                       shape_str(o.expect_text), ", found ", shape_str(txt), " in shard ", p.string());
    latent = lat;
    text = txt;
  } else {
    require<DataError>(lat == latent, who, ": shard ", p.string(), " has latents ", shape_str(lat),
                       " per sample but shard ", shards[0].path.string(), " has ", shape_str(latent),
                       " (all shards of a loader must be one kind and size)");
    require<DataError>(txt == text, who, ": shard ", p.string(), " has text_emb ", shape_str(txt),
                       " per sample but shard ", shards[0].path.string(), " has ", shape_str(text));
  }
  shards[s].rows = n;
  shards[s].first = rows;
  if (o.one_clip_per_key) {
    // A key's rows are consecutive when prep wrote them; grouping by key within the shard also
    // covers any other order. Keys are only unique per shard, so groups never span shards.
    auto keys = r.strings("key");
    require<DataError>(static_cast<int64_t>(keys.size()) == n, who, ": shard ", p.string(), " has ", keys.size(),
                       " keys for ", n, " rows");
    std::unordered_map<std::string, size_t> first_of;
    std::vector<std::vector<int64_t>> groups;
    for (int64_t i = 0; i < n; ++i) {
      auto [it, fresh] = first_of.try_emplace(keys[i], groups.size());
      if (fresh) groups.emplace_back();
      groups[it->second].push_back(rows + i);
    }
    for (auto& g : groups) {
      group_rows.insert(group_rows.end(), g.begin(), g.end());
      group_start.push_back(static_cast<int64_t>(group_rows.size()));
    }
    n_items += static_cast<int64_t>(groups.size());
  } else {
    n_items += n;
  }
  rows += n;
}

void LatentLoader::Impl::build_index() {
  auto paths = o.shards;
  std::sort(paths.begin(), paths.end());
  for (size_t i = 1; i < paths.size(); ++i)
    require<ConfigError>(paths[i] != paths[i - 1], who, ": shard ", paths[i].string(), " is listed twice");
  if (o.one_clip_per_key) group_start.push_back(0);
  std::string id = cat("groups=", o.one_clip_per_key, "\n");
  for (size_t s = 0; s < paths.size(); ++s) {
    const auto& p = paths[s];
    require<IoError>(std::filesystem::exists(p), who, ": shard ", p.string(), " does not exist");
    shards.push_back({p, 0, 0});
    try {
      io::LatentShardReader r(p);
      scan_shard(s, r);
    } catch (const IoError& e) {
      throw IoError(cat(who, ": cannot read shard ", p.string(), ": ", e.what()));
    }
    // File names, not paths: a run folder that moved is still the same data set.
    id += cat(p.filename().string(), ":", shards[s].rows, "\n");
  }
  if (o.one_clip_per_key && n_items == rows) {  // no repeated keys: items are rows, save the memory
    group_start = {};
    group_rows = {};
  }
  require<ConfigError>(n_items >= o.global_batch, who, ": the data set has ", n_items,
                       o.one_clip_per_key ? " items (distinct keys)" : " samples", " in ", shards.size(),
                       " shards (first ", shards[0].path.string(), ") but the global batch is ", o.global_batch,
                       ": not even one step per epoch");
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(checksum::hash64(id)));
  fingerprint = cat("xxh3:", hex);
  if (o.preload) {
    const int64_t ln = numel(latent), tn = numel(text);
    mem_latent.resize(static_cast<size_t>(rows * ln));
    mem_text.resize(static_cast<size_t>(rows * tn));
    for (auto& sh : shards) {
      try {
        io::LatentShardReader r(sh.path);
        auto caps = r.strings("caption"), keys = r.strings("key");
        for (int64_t i = 0; i < sh.rows; ++i) {
          const auto row = sh.first + i;
          r.read_half_row("latents", static_cast<hsize_t>(i), mem_latent.data() + row * ln, static_cast<size_t>(ln));
          r.read_half_row("text_emb", static_cast<hsize_t>(i), mem_text.data() + row * tn, static_cast<size_t>(tn));
        }
        mem_caption.insert(mem_caption.end(), caps.begin(), caps.end());
        mem_key.insert(mem_key.end(), keys.begin(), keys.end());
      } catch (const std::exception& e) {
        throw IoError(cat(who, ": preload shard ", sh.path.string(), ": ", e.what()));
      }
    }
  }
}

int64_t LatentLoader::Impl::pick_row(int64_t epoch, int64_t item) const {
  if (group_start.empty()) return item;
  const int64_t first = group_start[item], n = group_start[item + 1] - first;
  if (n == 1) return group_rows[first];
  // Named by (epoch, item), so the choice does not depend on rank, batch or read order.
  rng::Stream s(rng::key(o.seed, o.stream, static_cast<uint64_t>(epoch * n_items + item), "clip"));
  return group_rows[first + s.uniform_int(0, n - 1)];
}

Batch LatentLoader::Impl::produce(int64_t t, ReaderCache& cache) {
  const int64_t B = o.micro_batch, spe = n_items / o.global_batch;
  Batch b;
  b.step = t / accum;
  b.micro = t % accum;
  b.epoch = b.step / spe;
  if (b.epoch != perm_epoch) {
    perm = epoch_permutation(o.seed, o.stream, b.epoch, n_items);
    perm_epoch = b.epoch;
  }
  const int64_t base = (b.step % spe) * o.global_batch + b.micro * o.world * B + o.rank * B;
  std::vector<int64_t> lshape{B}, tshape{B};
  lshape.insert(lshape.end(), latent.begin(), latent.end());
  tshape.insert(tshape.end(), text.begin(), text.end());
  auto lat = torch::empty(lshape, torch::kFloat), txt = torch::empty(tshape, torch::kFloat);
  const int64_t ln = numel(latent), tn = numel(text);
  float* lp = lat.data_ptr<float>();
  float* tp = txt.data_ptr<float>();
  half_row.resize(static_cast<size_t>(std::max(ln, tn)));
  for (int64_t i = 0; i < B; ++i) {
    const int64_t pos = base + i, row = pick_row(b.epoch, perm[pos]);
    auto it = std::upper_bound(shards.begin(), shards.end(), row, [](int64_t r, const Shard& s) { return r < s.first; });
    const size_t s = static_cast<size_t>(it - shards.begin()) - 1;
    const auto local = static_cast<hsize_t>(row - shards[s].first);
    if (o.preload) {
      widen(mem_latent.data() + row * ln, lp + i * ln, ln);
      widen(mem_text.data() + row * tn, tp + i * tn, tn);
      b.captions.push_back(mem_caption[static_cast<size_t>(row)]);
      b.keys.push_back(mem_key[static_cast<size_t>(row)]);
      b.sample_ids.push_back(b.epoch * n_items + pos);
      continue;
    }
    try {
      const auto& r = cache.get(s, shards[s].path);
      r.read_half_row("latents", local, half_row.data(), static_cast<size_t>(ln));
      widen(half_row.data(), lp + i * ln, ln);
      r.read_half_row("text_emb", local, half_row.data(), static_cast<size_t>(tn));
      widen(half_row.data(), tp + i * tn, tn);
      b.captions.push_back(r.string_at("caption", local));
      b.keys.push_back(r.string_at("key", local));
    } catch (const std::exception& e) {
      throw IoError(cat(who, ": read row ", local, " of shard ", shards[s].path.string(), " (step ", b.step,
                        ", micro ", b.micro, "): ", e.what()));
    }
    b.sample_ids.push_back(b.epoch * n_items + pos);
  }
  b.latents = std::move(lat);
  b.text_emb = std::move(txt);
  return b;
}

void LatentLoader::Impl::run() {
  try {
    build_index();
  } catch (...) {
    std::lock_guard<std::mutex> lk(m);
    init_error = std::current_exception();
    init_done = true;
    cv.notify_all();
    return;
  }
  {
    std::lock_guard<std::mutex> lk(m);
    init_done = true;
  }
  cv.notify_all();
  ReaderCache cache(kOpenShards);  // destroyed here, on this thread: Note [loader thread]
  try {
    for (;;) {
      int64_t t;
      uint64_t g;
      {
        std::unique_lock<std::mutex> lk(m);
        cv.wait(lk, [&] { return stop || produce_t < consume_t + std::max(int64_t{o.prefetch}, int64_t{waiting}); });
        if (stop) return;
        t = produce_t;
        g = gen;
      }
      Batch b = produce(t, cache);
      {
        std::lock_guard<std::mutex> lk(m);
        if (g != gen) continue;  // restore() moved the position while this batch was read
        ready.push_back(std::move(b));
        ++produce_t;
      }
      cv.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lk(m);
    error = std::current_exception();
    cv.notify_all();
  }
}

LatentLoader::LatentLoader(LoaderOptions opts) : impl_(std::make_unique<Impl>(std::move(opts))) {
  impl_->check_options();
  impl_->thread = std::thread([p = impl_.get()] { p->run(); });
  std::unique_lock<std::mutex> lk(impl_->m);
  impl_->cv.wait(lk, [&] { return impl_->init_done; });
  if (impl_->init_error) {
    auto e = impl_->init_error;
    lk.unlock();
    impl_->thread.join();
    std::rethrow_exception(e);
  }
}

LatentLoader::~LatentLoader() {
  if (!impl_ || !impl_->thread.joinable()) return;
  {
    std::lock_guard<std::mutex> lk(impl_->m);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  impl_->thread.join();
}

int64_t LatentLoader::accumulation() const { return impl_->accum; }
int64_t LatentLoader::items() const { return impl_->n_items; }
int64_t LatentLoader::steps_per_epoch() const { return impl_->n_items / impl_->o.global_batch; }
const std::vector<int64_t>& LatentLoader::latent_shape() const { return impl_->latent; }
const std::vector<int64_t>& LatentLoader::text_shape() const { return impl_->text; }
const std::string& LatentLoader::fingerprint() const { return impl_->fingerprint; }

Batch LatentLoader::next() {
  auto& p = *impl_;
  std::unique_lock<std::mutex> lk(p.m);
  p.waiting = true;
  p.cv.notify_all();
  p.cv.wait(lk, [&] { return !p.ready.empty() || p.error; });
  p.waiting = false;
  if (p.ready.empty()) std::rethrow_exception(p.error);
  Batch b = std::move(p.ready.front());
  p.ready.pop_front();
  ++p.consume_t;
  lk.unlock();
  p.cv.notify_all();
  return b;
}

nlohmann::json LatentLoader::state() const {
  const auto& p = *impl_;
  int64_t t;
  {
    std::lock_guard<std::mutex> lk(p.m);
    t = p.consume_t;
  }
  const int64_t step = t / p.accum;
  return {{"step", step},
          {"micro", t % p.accum},
          {"epoch", step / steps_per_epoch()},
          {"global_batch", p.o.global_batch},
          {"accumulation", p.accum},
          {"items", p.n_items},
          {"fingerprint", p.fingerprint},
          {"seed", p.o.seed},
          {"stream", p.o.stream}};
}

void LatentLoader::restore(const nlohmann::json& s) {
  auto& p = *impl_;
  int64_t step, micro, global_batch, accum, items;
  std::string fingerprint, stream;
  uint64_t seed;
  try {
    step = s.at("step").get<int64_t>();
    micro = s.at("micro").get<int64_t>();
    global_batch = s.at("global_batch").get<int64_t>();
    accum = s.at("accumulation").get<int64_t>();
    items = s.at("items").get<int64_t>();
    fingerprint = s.at("fingerprint").get<std::string>();
    seed = s.at("seed").get<uint64_t>();
    stream = s.at("stream").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(cat(p.who, ": restore: not a loader state (", e.what(), "): ", s.dump()));
  }
  require<ConfigError>(fingerprint == p.fingerprint && items == p.n_items, p.who,
                       ": restore: the state is from another data set (", items, " items, ", fingerprint,
                       "; these shards: ", p.n_items, " items, ", p.fingerprint, ")");
  require<ConfigError>(global_batch == p.o.global_batch, p.who, ": restore: the state was taken with global batch ",
                       global_batch, ", this loader has ", p.o.global_batch,
                       " (the step count would mean other samples)");
  require<ConfigError>(seed == p.o.seed && stream == p.o.stream, p.who, ": restore: the state is of seed ", seed,
                       " stream \"", stream, "\", this loader has seed ", p.o.seed, " stream \"", p.o.stream, "\"");
  require<ConfigError>(step >= 0 && micro >= 0 && micro < accum, p.who, ": restore: bad position step ", step,
                       " micro ", micro, " of ", accum);
  require<ConfigError>(micro == 0 || accum == p.accum, p.who, ": restore: the state is mid-step (micro ", micro,
                       " of ", accum, ") but this loader accumulates ", p.accum, " micro-batches per step");
  {
    std::lock_guard<std::mutex> lk(p.m);
    p.ready.clear();
    p.consume_t = p.produce_t = step * p.accum + micro;
    ++p.gen;
  }
  p.cv.notify_all();
}

}  // namespace mcm::train
