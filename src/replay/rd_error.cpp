#include "replay/rd_error.h"

namespace fdnc::rd {

std::string_view rd_errc_name(RdErrc code) {
    switch (code) {
    case RdErrc::open_failed: return "open_failed";
    case RdErrc::empty_file: return "empty_file";
    case RdErrc::truncated_header: return "truncated_header";
    case RdErrc::truncated_payload: return "truncated_payload";
    case RdErrc::negative_size: return "negative_size";
    case RdErrc::oversized_section: return "oversized_section";
    case RdErrc::bad_payload: return "bad_payload";
    case RdErrc::gzip_error: return "gzip_error";
    case RdErrc::orphan_contents: return "orphan_contents";
    case RdErrc::contents_overflow: return "contents_overflow";
    case RdErrc::write_failed: return "write_failed";
    }
    return "unknown";
}

std::string RdError::what() const {
    std::string s{rd_errc_name(code)};
    s += " at offset " + std::to_string(offset);
    if (!detail.empty()) s += ": " + detail;
    return s;
}

} // namespace fdnc::rd
