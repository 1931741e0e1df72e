// Target (d): the .rd / .rd.gz parser. The input is a capture file (gzip is detected by its magic,
// so compressed inputs reach the zlib path too); it goes through RdReader section by section and
// through load_capture (the replay model) in both alignments. Every malformed file must end in an
// RdError, never a crash or an allocation beyond what the file can back.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "replay/capture_loader.h"
#include "replay/rd_reader.h"

namespace {

class MemFile {
public:
    MemFile(const uint8_t* data, size_t size) : fd_(::memfd_create("fuzz-rd", MFD_CLOEXEC)) {
        if (fd_ < 0) __builtin_trap();
        for (size_t off = 0; off < size;) {
            const ssize_t n = ::write(fd_, data + off, size - off);
            if (n <= 0) __builtin_trap();
            off += static_cast<size_t>(n);
        }
        path_ = "/proc/self/fd/" + std::to_string(fd_);
    }
    ~MemFile() { ::close(fd_); }
    const std::string& path() const { return path_; }

private:
    int fd_;
    std::string path_;
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    MemFile f(data, size);
    {
        auto r = fdnc::rd::RdReader::open(f.path());
        if (r) {
            fdnc::rd::RdReader& rd = r.value();
            fdnc::rd::Section s;
            uint64_t sum = 0;
            while (rd.next(s) == fdnc::rd::RdReader::Next::Section)
                for (uint8_t b : s.payload) sum += b; // every payload byte must be readable
            if (rd.failed()) (void)rd.error().what();
            (void)sum;
        }
    }
    for (uint64_t align : {fdnc::rd::kPageBytes, uint64_t{1}}) {
        auto c = fdnc::rd::load_capture(f.path(), fdnc::rd::LoadOptions{align});
        if (!c) (void)c.error().what();
    }
    return 0;
}
