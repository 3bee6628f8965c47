// FFmpeg plumbing shared by decode and encode: the check helper (av_strerror text), unique_ptr
// deleters for every handle, and in-memory AVIO for reading and writing byte buffers.
#pragma once
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}
#include <memory>
#include <string>
#include <vector>

namespace mcm::io::av {

/// av_strerror as a string.
std::string error_text(int code);
/// Throws DataError("<what>: <av error>") when code < 0; returns code otherwise.
int check(int code, const std::string& what);

struct FormatInputDeleter { void operator()(AVFormatContext* p) const { avformat_close_input(&p); } };
struct FormatOutputDeleter { void operator()(AVFormatContext* p) const { avformat_free_context(p); } };
struct CodecDeleter { void operator()(AVCodecContext* p) const { avcodec_free_context(&p); } };
struct FrameDeleter { void operator()(AVFrame* p) const { av_frame_free(&p); } };
struct PacketDeleter { void operator()(AVPacket* p) const { av_packet_free(&p); } };
struct SwsDeleter { void operator()(SwsContext* p) const { sws_freeContext(p); } };
struct AvioDeleter {
  void operator()(AVIOContext* p) const {
    if (p) av_freep(&p->buffer);
    avio_context_free(&p);
  }
};
using InputPtr = std::unique_ptr<AVFormatContext, FormatInputDeleter>;
using OutputPtr = std::unique_ptr<AVFormatContext, FormatOutputDeleter>;
using CodecPtr = std::unique_ptr<AVCodecContext, CodecDeleter>;
using FramePtr = std::unique_ptr<AVFrame, FrameDeleter>;
using PacketPtr = std::unique_ptr<AVPacket, PacketDeleter>;
using SwsPtr = std::unique_ptr<SwsContext, SwsDeleter>;
using AvioPtr = std::unique_ptr<AVIOContext, AvioDeleter>;

FramePtr make_frame();
PacketPtr make_packet();

/// A read-only, seekable view of bytes for avformat (the bytes must outlive the reader).
struct MemoryReader {
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t pos = 0;
  /// Creates the AVIOContext bound to this reader.
  AvioPtr make_avio();
};

/// A growable, seekable byte sink for muxers that rewrite headers (mp4's moov).
struct MemoryWriter {
  std::vector<uint8_t> bytes;
  size_t pos = 0;
  AvioPtr make_avio();
};

/// Silences FFmpeg's own logging below errors, once per process.
void quiet_logs();

/// Library versions, e.g. "FFmpeg 5.1.6 (avformat 59.27.100, avcodec 59.37.100)".
std::string version();

}  // namespace mcm::io::av
