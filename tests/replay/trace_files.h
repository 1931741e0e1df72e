// The shared real captures (../shared/traces), located through FDNC_TRACES_DIR set by meson.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace fdnc::rd::test {

// Every *.rd / *.rd.gz in the traces directory, sorted. Throws (the test fails loudly) when the
// variable is unset, the directory is missing, or it holds no capture.
inline std::vector<std::string> trace_files() {
    const char* dir = std::getenv("FDNC_TRACES_DIR");
    if (!dir || !*dir) throw std::runtime_error("FDNC_TRACES_DIR is not set");
    if (!std::filesystem::is_directory(dir))
        throw std::runtime_error(std::string("traces directory missing: ") + dir);
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
        const std::string n = e.path().filename().string();
        if (n.ends_with(".rd") || n.ends_with(".rd.gz")) out.push_back(e.path().string());
    }
    if (out.empty()) throw std::runtime_error(std::string("no .rd/.rd.gz captures in ") + dir);
    std::sort(out.begin(), out.end());
    return out;
}

} // namespace fdnc::rd::test
