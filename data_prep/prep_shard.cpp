// One prep shard through a bounded three-stage pipeline: reader thread -> decode workers ->
// batched encoding and writing on the calling thread.
#include "data_prep/prep_shard.hpp"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "core/rng.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "data_prep/prep_config.hpp"
#include "io/hdf5_store.hpp"
#include "io/media_decode.hpp"
#include "io/webdataset.hpp"

namespace mcm::stages {
namespace {
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Note [prep pipeline]
// Every sample gets a sequence number from the reader thread, in tar order. Decode workers
// take samples in any order; the calling thread consumes results strictly by sequence number,
// so rows, batches and the skip log come out in tar order whatever the worker count, and the
// encoder sees the same batches on any machine. At most `capacity` samples are between the
// reader and the consumer (queued, decoding or decoded), which bounds memory: the reader
// waits, not the heap. Randomness (window start, crop, posterior noise) is keyed by the sample
// key, never by rank, thread or position.

struct Decoded {
  std::string key, caption;
  std::vector<io::DecodedClip> clips;  ///< K windows of a video, or one image
  std::optional<SkipReason> skip;
};

struct Work {
  int64_t seq = 0;
  SampleItem item;
};

/// Seed of window k of a sample (start frame and crop) or of its posterior noise: one stream
/// of the run's scheme (Note [rng streams]) per (sample key, window, purpose).
/// Videos and images are separate streams: both kinds of shard often number keys from 000000000.
uint64_t window_seed(int64_t run_seed, bool video, const std::string& key, int64_t k, const char* purpose) {
  return rng::seed64(rng::key(static_cast<uint64_t>(run_seed), "prep", rng::index_of(key),
                              cat(video ? "video " : "image ", purpose, " ", k)));
}

class Pipeline {
 public:
  Pipeline(const config::Config& cfg, const ShardJob& job, int workers)
      : cfg_(cfg), job_(job), capacity_(std::max<int64_t>(4, 2 * (workers + cfg.section<PrepSection>().batch_clips))) {
    require<ConfigError>(workers >= 1, "prep: ", workers, " decode workers (need at least one)");
    try {
      threads_.emplace_back([this] { read_loop(); });
      for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { decode_loop(); });
    } catch (...) {  // e.g. EAGAIN under a process limit: stop and join the threads already running
      shutdown();
      throw;
    }
  }
  ~Pipeline() { shutdown(); }

  /// The next result in tar order; nullopt at the end. Rethrows a reader or worker failure.
  std::optional<Decoded> next() {
    std::unique_lock<std::mutex> lk(m_);
    cv_.wait(lk, [&] { return error_ || done_.count(consumed_) || (reader_done_ && consumed_ == produced_); });
    if (error_) std::rethrow_exception(error_);
    auto it = done_.find(consumed_);
    if (it == done_.end()) return std::nullopt;
    Decoded d = std::move(it->second);
    done_.erase(it);
    ++consumed_;
    cv_.notify_all();
    return d;
  }
  int64_t samples_read() const { return produced_; }
  const std::optional<std::string>& tar_error() const { return tar_error_; }
  double decode_seconds() const { return decode_seconds_; }

 private:
  void shutdown() noexcept {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

  void fail(std::exception_ptr e) {
    std::lock_guard<std::mutex> lk(m_);
    if (!error_) error_ = e;
    stop_ = true;
    cv_.notify_all();
  }

  void read_loop() {
    try {
      io::WebDatasetReader reader(job_.input);  // throws when the file is not a tar at all
      io::Sample s;
      for (;;) {
        {
          std::unique_lock<std::mutex> lk(m_);
          cv_.wait(lk, [&] { return stop_ || produced_ - consumed_ < capacity_; });
          if (stop_) return;
        }
        if (!reader.next(s)) break;
        auto r = prepare_sample(s, job_.video, cat(job_.input.filename().string(), ":", s.key));
        std::lock_guard<std::mutex> lk(m_);
        int64_t seq = produced_++;
        if (auto* skip = std::get_if<SkipReason>(&r)) done_[seq] = Decoded{s.key, "", {}, *skip};
        else queue_.push_back(Work{seq, std::move(std::get<SampleItem>(r))});
        cv_.notify_all();
      }
      std::lock_guard<std::mutex> lk(m_);
      tar_error_ = reader.error();
      reader_done_ = true;
      cv_.notify_all();
    } catch (const Error& e) {  // the shard itself cannot be read (not a tar, I/O error)
      fail(std::make_exception_ptr(UnreadableShard(e.what())));
    } catch (...) {
      fail(std::current_exception());
    }
  }

  void decode_loop() {
    try {
      for (;;) {
        Work w;
        {
          std::unique_lock<std::mutex> lk(m_);
          cv_.wait(lk, [&] { return stop_ || !queue_.empty() || reader_done_; });
          if (stop_ || queue_.empty()) return;
          w = std::move(queue_.front());
          queue_.pop_front();
        }
        auto t0 = Clock::now();
        Decoded d;
        try {
          d = decode(w.item);
        } catch (const std::exception& e) {  // not a sample fault (those are skips): name the sample
          throw IoError(cat("decode ", job_.input.filename().string(), ":", w.item.key, ": ", e.what()));
        }
        double secs = std::chrono::duration<double>(Clock::now() - t0).count();
        std::lock_guard<std::mutex> lk(m_);
        decode_seconds_ += secs;
        done_[w.seq] = std::move(d);
        cv_.notify_all();
      }
    } catch (...) {
      fail(std::current_exception());
    }
  }

  Decoded decode(SampleItem& item) const {
    const auto& p = cfg_.section<PrepSection>();
    Decoded d{item.key, item.caption, {}, std::nullopt};
    const std::string name = cat(job_.input.filename().string(), ":", item.key, ".", item.media_ext);
    const int64_t windows = job_.video ? p.clips_per_video : 1;
    for (int64_t k = 0; k < windows; ++k) {
      io::DecodeOptions o;
      o.frames = job_.video ? p.frames : 1;
      o.stride = job_.video ? p.stride : 1;
      o.window = job_.video ? p.frames * p.stride : 1;
      o.min_frames = job_.video ? p.min_frames : 0;
      o.width = o.height = static_cast<int>(p.resolution);
      o.crop = p.crop == "center" ? io::CropMode::center : io::CropMode::random_resized;
      o.scale_min = job_.video ? p.crop_scale_min : p.image_crop_scale_min;
      o.seed = window_seed(cfg_.run.seed, job_.video, item.key, k, "window");
      o.start = job_.video ? -1 : 0;
      o.threads = 1;
      try {
        d.clips.push_back(io::decode_clip(item.media.data(), item.media.size(), name, o));
      } catch (const io::ClipTooShort& e) {
        return Decoded{item.key, "", {}, SkipReason{"too_short", e.what()}};
      } catch (const DataError& e) {
        return Decoded{item.key, "", {}, SkipReason{job_.video ? "corrupt_video" : "corrupt_image", e.what()}};
      }
    }
    item.media = {};  // the compressed bytes are no longer needed
    return d;
  }

  const config::Config& cfg_;
  const ShardJob& job_;
  const int64_t capacity_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<Work> queue_;
  std::map<int64_t, Decoded> done_;
  int64_t produced_ = 0, consumed_ = 0;
  bool reader_done_ = false, stop_ = false;
  std::exception_ptr error_;
  std::optional<std::string> tar_error_;
  double decode_seconds_ = 0;
  std::vector<std::thread> threads_;  // last: joined (in the destructor) before the state above goes
};

// IEEE half bit patterns of a tensor, in row-major order (what the HDF5 writer stores).
std::vector<uint16_t> half_bits(const torch::Tensor& t) {
  auto h = t.contiguous().to(torch::kFloat16);
  std::vector<uint16_t> out(static_cast<size_t>(h.numel()));
  std::memcpy(out.data(), h.data_ptr(), out.size() * sizeof(uint16_t));
  return out;
}

/// Clips waiting for the encoders, written in order by flush().
class Batch {
 public:
  Batch(const config::Config& cfg, const ShardJob& job, PrepEncoders& enc, io::LatentShardWriter& writer)
      : cfg_(cfg), job_(job), enc_(enc), writer_(writer) {}

  void add(Decoded&& d) {
    n_clips_ += static_cast<int64_t>(d.clips.size());
    items_.push_back(std::move(d));
    if (n_clips_ >= cfg_.section<PrepSection>().batch_clips) flush();
  }

  void flush() {
    if (items_.empty()) return;
    auto t0 = Clock::now();
    torch::NoGradGuard ng;
    std::vector<torch::Tensor> pixels;
    std::vector<uint64_t> seeds;
    std::vector<std::string> captions;
    for (auto& d : items_) {
      captions.push_back(d.caption);
      for (size_t k = 0; k < d.clips.size(); ++k) {
        auto& c = d.clips[k];
        pixels.push_back(torch::from_blob(c.rgb.data(), {c.frames, c.height, c.width, 3}, torch::kUInt8));
        uint64_t s = window_seed(cfg_.run.seed, job_.video, d.key, static_cast<int64_t>(k), "posterior");
        for (int f = 0; f < c.frames; ++f) seeds.push_back(s + static_cast<uint64_t>(f));
      }
    }
    auto frames = torch::cat(pixels);  // uint8 [F, H, W, 3]; float only per encoder call (bounds memory)
    std::vector<torch::Tensor> parts;
    const int64_t step = cfg_.section<PrepSection>().encode_batch;
    for (int64_t i = 0; i < frames.size(0); i += step) {
      int64_t end = std::min<int64_t>(frames.size(0), i + step);
      auto x = frames.slice(0, i, end).permute({0, 3, 1, 2}).to(torch::kFloat32).div(127.5).sub(1.0);
      parts.push_back(enc_.ae->encode_frames(x, std::vector<uint64_t>(seeds.begin() + i, seeds.begin() + end)));
    }
    auto z = torch::cat(parts);                // [frames, C, h, w]
    auto text = enc_.text->encode(captions);  // [videos, L, D]
    int64_t row = 0;
    for (size_t v = 0; v < items_.size(); ++v) {
      auto emb = half_bits(text[static_cast<int64_t>(v)]);
      for (auto& c : items_[v].clips) {
        auto clip = z.slice(0, row, row + c.frames);
        row += c.frames;
        auto latent = half_bits(job_.video ? clip.permute({1, 0, 2, 3}) : clip[0]);
        writer_.append(latent.data(), emb.data(), items_[v].caption, items_[v].key,
                       job_.video ? c.frame_indices : std::vector<int64_t>{});
        fps_sum_ += c.fps;
        ++rows_;
      }
      ++videos_;
    }
    items_.clear();
    n_clips_ = 0;
    encode_seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
  }

  int64_t rows() const { return rows_; }
  int64_t videos() const { return videos_; }
  double mean_fps() const { return rows_ ? fps_sum_ / static_cast<double>(rows_) : 0.0; }
  double encode_seconds() const { return encode_seconds_; }

 private:
  const config::Config& cfg_;
  const ShardJob& job_;
  PrepEncoders& enc_;
  io::LatentShardWriter& writer_;
  std::vector<Decoded> items_;
  int64_t n_clips_ = 0, rows_ = 0, videos_ = 0;
  double fps_sum_ = 0, encode_seconds_ = 0;
};

}  // namespace

json process_shard(const config::Config& cfg, const ShardJob& job, PrepEncoders& enc, const PrepShardOptions& opt,
                   SkipLog::LogBudget& budget) {
  const auto& p = cfg.section<PrepSection>();
  auto t0 = Clock::now();
  const int64_t res = p.resolution, f = enc.ae->downsample(), c = enc.ae->latent_channels();
  io::LatentShardSpec spec;
  spec.latent_shape = job.video ? std::vector<hsize_t>{hsize_t(c), hsize_t(p.frames), hsize_t(res / f), hsize_t(res / f)}
                                : std::vector<hsize_t>{hsize_t(c), hsize_t(res / f), hsize_t(res / f)};
  spec.text_len = static_cast<hsize_t>(enc.text->max_length());
  spec.text_dim = static_cast<hsize_t>(enc.text->dim());
  spec.frames = job.video ? static_cast<hsize_t>(p.frames) : 0;
  io::LatentShardWriter writer(job.output, spec);
  SkipLog skips(job.input.string(), opt.rank, budget);
  Batch batch(cfg, job, enc, writer);
  int64_t read = 0;
  double decode_seconds = 0;
  {
    Pipeline pipe(cfg, job, opt.decode_workers);
    while (auto d = pipe.next()) {
      if (d->skip) skips.add(d->key, d->skip->reason, d->skip->detail);
      else batch.add(std::move(*d));
    }
    batch.flush();
    read = pipe.samples_read();
    decode_seconds = pipe.decode_seconds();
    // The sample cut by a truncation is lost; everything before it is kept.
    if (pipe.tar_error()) skips.add("", "truncated_tar", *pipe.tar_error());
  }
  writer.set_attr("schema_version", int64_t{1});
  writer.set_attr("kind", std::string(job.video ? "video" : "image"));
  writer.set_attr("source_shard", job.input.string());
  writer.set_attr("skip_log", job.skip_log.filename().string());
  writer.set_attr("scaling_factor", enc.ae->scaling_factor());
  writer.set_attr("autoencoder", enc.ae->name());
  writer.set_attr("text_encoder", enc.text->name());
  writer.set_attr("resolution", res);
  writer.set_attr("num_frames", job.video ? p.frames : int64_t{1});
  writer.set_attr("frame_stride", job.video ? p.stride : int64_t{1});
  writer.set_attr("clips_per_video", job.video ? p.clips_per_video : int64_t{1});
  writer.set_attr("fps", batch.mean_fps());
  writer.set_attr("config_hash", opt.stage_hash);  // the keys that determine this output, not paths
  writer.finish();
  fs::write_atomic(job.skip_log, skips.lines());

  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  json counts{{"samples_read", read}, {"skipped", skips.counts()}};
  if (job.video) {
    counts["clips_written"] = batch.rows();
    counts["videos_written"] = batch.videos();
  } else {
    counts["images_written"] = batch.rows();
  }
  return json{{"counts", counts},
              {"timing", {{"seconds", secs}, {"decode_seconds", decode_seconds}, {"encode_seconds", batch.encode_seconds()}}}};
}

}  // namespace mcm::stages
