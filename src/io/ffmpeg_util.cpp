// FFmpeg plumbing implementation.
#include "io/ffmpeg_util.hpp"

#include <cstring>
#include <mutex>

#include "core/error.hpp"

namespace mcm::io::av {

std::string error_text(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(code, buf, sizeof buf);
  return buf;
}

int check(int code, const std::string& what) {
  if (code < 0) throw DataError(cat(what, ": ", error_text(code)));
  return code;
}

FramePtr make_frame() {
  FramePtr f(av_frame_alloc());
  if (!f) throw IoError("av_frame_alloc: out of memory");
  return f;
}

PacketPtr make_packet() {
  PacketPtr p(av_packet_alloc());
  if (!p) throw IoError("av_packet_alloc: out of memory");
  return p;
}

namespace {
constexpr int kAvioBuffer = 1 << 16;

int mem_read(void* opaque, uint8_t* buf, int n) {
  auto* r = static_cast<MemoryReader*>(opaque);
  size_t left = r->size - r->pos;
  if (left == 0) return AVERROR_EOF;
  size_t k = std::min<size_t>(left, static_cast<size_t>(n));
  std::memcpy(buf, r->data + r->pos, k);
  r->pos += k;
  return static_cast<int>(k);
}

int64_t mem_seek(void* opaque, int64_t offset, int whence) {
  auto* r = static_cast<MemoryReader*>(opaque);
  if (whence == AVSEEK_SIZE) return static_cast<int64_t>(r->size);
  int64_t base = whence == SEEK_CUR ? static_cast<int64_t>(r->pos) : whence == SEEK_END ? static_cast<int64_t>(r->size) : 0;
  int64_t p = base + offset;
  if (p < 0 || p > static_cast<int64_t>(r->size)) return AVERROR(EINVAL);
  r->pos = static_cast<size_t>(p);
  return p;
}

int mem_write(void* opaque, const uint8_t* buf, int n) {
  auto* w = static_cast<MemoryWriter*>(opaque);
  if (w->pos + n > w->bytes.size()) w->bytes.resize(w->pos + n);
  std::memcpy(w->bytes.data() + w->pos, buf, n);
  w->pos += n;
  return n;
}

int64_t mem_wseek(void* opaque, int64_t offset, int whence) {
  auto* w = static_cast<MemoryWriter*>(opaque);
  if (whence == AVSEEK_SIZE) return static_cast<int64_t>(w->bytes.size());
  int64_t base = whence == SEEK_CUR ? static_cast<int64_t>(w->pos) : whence == SEEK_END ? static_cast<int64_t>(w->bytes.size()) : 0;
  int64_t p = base + offset;
  if (p < 0) return AVERROR(EINVAL);
  w->pos = static_cast<size_t>(p);
  return p;
}

AvioPtr alloc_avio(void* opaque, bool write, int (*rd)(void*, uint8_t*, int),
                   int (*wr)(void*, const uint8_t*, int), int64_t (*sk)(void*, int64_t, int)) {
  auto* buf = static_cast<uint8_t*>(av_malloc(kAvioBuffer));
  if (!buf) throw IoError("av_malloc: out of memory");
  AVIOContext* ctx = avio_alloc_context(buf, kAvioBuffer, write ? 1 : 0, opaque, rd,
#if LIBAVFORMAT_VERSION_MAJOR >= 61
                                        reinterpret_cast<int (*)(void*, const uint8_t*, int)>(wr),
#else
                                        reinterpret_cast<int (*)(void*, uint8_t*, int)>(wr),
#endif
                                        sk);
  if (!ctx) {
    av_free(buf);
    throw IoError("avio_alloc_context: out of memory");
  }
  return AvioPtr(ctx);
}
}  // namespace

AvioPtr MemoryReader::make_avio() { return alloc_avio(this, false, mem_read, nullptr, mem_seek); }
AvioPtr MemoryWriter::make_avio() { return alloc_avio(this, true, nullptr, mem_write, mem_wseek); }

void quiet_logs() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_level(AV_LOG_FATAL); });
}

std::string version() {
  auto v = [](unsigned x) { return cat(AV_VERSION_MAJOR(x), ".", AV_VERSION_MINOR(x), ".", AV_VERSION_MICRO(x)); };
  return cat("FFmpeg ", av_version_info(), " (avformat ", v(avformat_version()), ", avcodec ", v(avcodec_version()),
             ", swscale ", v(swscale_version()), ")");
}

}  // namespace mcm::io::av
