#include "replay/rd_error.h"

namespace fdnc::rd {

std::string_view rd_errc_name(RdErrc code) {
    switch (code) {
    case RdErrc::OpenFailed: return "open_failed";
    case RdErrc::EmptyFile: return "empty_file";
    case RdErrc::TruncatedHeader: return "truncated_header";
    case RdErrc::TruncatedPayload: return "truncated_payload";
    case RdErrc::NegativeSize: return "negative_size";
    case RdErrc::OversizedSection: return "oversized_section";
    case RdErrc::BadPayload: return "bad_payload";
    case RdErrc::GzipError: return "gzip_error";
    case RdErrc::OrphanContents: return "orphan_contents";
    case RdErrc::ContentsOverflow: return "contents_overflow";
    case RdErrc::WriteFailed: return "write_failed";
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
