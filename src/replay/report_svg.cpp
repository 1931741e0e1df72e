// Hand-written SVG: nothing but rects, lines and text, every attribute quoted, text escaped, so
// the file is well-formed XML that any browser shows.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "replay/report.h"

namespace fdnc::replay {

namespace {

constexpr int kWidth = 1200;
constexpr int kLeft = 110, kRight = 30;
constexpr int kPanelH = 300;
constexpr size_t kMaxBars = 6000; // beyond that the picture is sampled (largest ranges kept)

std::string esc(const std::string& s) {
    std::string o;
    for (char c : s) {
        switch (c) {
        case '<': o += "&lt;"; break;
        case '>': o += "&gt;"; break;
        case '&': o += "&amp;"; break;
        case '"': o += "&quot;"; break;
        default: o += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
        }
    }
    return o;
}

std::string f(const char* fmt, double a) {
    char b[64];
    std::snprintf(b, sizeof b, fmt, a);
    return b;
}

std::string hex(uint64_t v) {
    char b[32];
    std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
    return b;
}

void text(std::string& o, double x, double y, const std::string& s, const char* extra = "") {
    o += "<text x=\"" + f("%.1f", x) + "\" y=\"" + f("%.1f", y) + "\" " + extra + ">" + esc(s) + "</text>\n";
}

void rect(std::string& o, double x, double y, double w, double h, const char* fill, const char* extra = "") {
    o += "<rect x=\"" + f("%.2f", x) + "\" y=\"" + f("%.2f", y) + "\" width=\"" + f("%.2f", std::max(w, 0.5)) +
         "\" height=\"" + f("%.2f", std::max(h, 0.8)) + "\" fill=\"" + fill + "\" " + extra + "/>\n";
}

// Address space over time: x = time, y = address; a live range is a blue bar, the time it spent
// in quarantine (freed, waiting for its submits to retire) an orange bar after it.
void address_panel(std::string& o, const ModeResult& m, int y0) {
    const double pw = kWidth - kLeft - kRight;
    text(o, kLeft, y0 - 8, m.mode + " mode: address space over time (" + std::to_string(m.ranges.size()) + " buffers)",
         "font-weight=\"bold\"");
    rect(o, kLeft, y0, pw, kPanelH, "#f7f7f7", "stroke=\"#999\"");
    if (m.ranges.empty() || m.wall_ns <= 0) {
        text(o, kLeft + 10, y0 + 20, "no ranges recorded");
        return;
    }
    uint64_t lo = ~uint64_t{0}, hi = 0;
    for (const BoRange& r : m.ranges) {
        lo = std::min(lo, r.iova);
        hi = std::max(hi, r.iova + r.size);
    }
    const double span = double(hi - lo);
    const double T = double(m.wall_ns);
    std::vector<const BoRange*> bars;
    for (const BoRange& r : m.ranges) bars.push_back(&r);
    if (bars.size() > kMaxBars) {
        std::sort(bars.begin(), bars.end(), [](auto* a, auto* b) { return a->size > b->size; });
        bars.resize(kMaxBars);
    }
    auto X = [&](double t) { return kLeft + pw * std::clamp(t / T, 0.0, 1.0); };
    auto Y = [&](uint64_t a) { return y0 + kPanelH - kPanelH * (double(a - lo) / span); };
    for (const BoRange* r : bars) {
        const double end = r->t_free_ns >= 0 ? double(r->t_free_ns) : T;
        const double ytop = Y(r->iova + r->size), h = Y(r->iova) - ytop;
        rect(o, X(double(r->t_alloc_ns)), ytop, X(end) - X(double(r->t_alloc_ns)), h, "#3b7dd8", "fill-opacity=\"0.7\"");
        if (r->t_free_ns >= 0 && r->t_release_ns > r->t_free_ns)
            rect(o, X(end), ytop, X(double(r->t_release_ns)) - X(end), h, "#f08c00", "fill-opacity=\"0.9\"");
    }
    text(o, kLeft - 6, y0 + 10, hex(hi), "text-anchor=\"end\" font-size=\"11\"");
    text(o, kLeft - 6, y0 + kPanelH, hex(lo), "text-anchor=\"end\" font-size=\"11\"");
    text(o, kLeft, y0 + kPanelH + 14, "0 ms", "font-size=\"11\"");
    text(o, kLeft + pw, y0 + kPanelH + 14, f("%.1f ms", T / 1e6), "text-anchor=\"end\" font-size=\"11\"");
}

// bo_new latency histogram: log-spaced bins (4 per decade, 0.1 us .. 1 s), one bar per mode.
void histogram_panel(std::string& o, const std::vector<ModeResult>& modes, int y0) {
    const double pw = kWidth - kLeft - kRight;
    const char* colors[] = {"#2f9e44", "#e03131", "#7048e8"};
    constexpr int kBins = 28;
    auto bin_of = [](uint64_t ns) {
        const double us = std::max(double(ns) / 1000.0, 0.1);
        return std::clamp(int(std::floor((std::log10(us) + 1.0) * 4.0)), 0, kBins - 1);
    };
    std::vector<std::vector<uint64_t>> counts(modes.size(), std::vector<uint64_t>(kBins, 0));
    uint64_t top = 1;
    for (size_t i = 0; i < modes.size(); i++)
        for (uint64_t ns : modes[i].bo_new_ns) top = std::max(top, ++counts[i][size_t(bin_of(ns))]);
    text(o, kLeft, y0 - 8, "bo_new latency histogram (log time, count per bin)", "font-weight=\"bold\"");
    rect(o, kLeft, y0, pw, kPanelH, "#f7f7f7", "stroke=\"#999\"");
    const double bw = pw / kBins;
    for (size_t i = 0; i < modes.size(); i++) {
        const double w = bw / double(modes.size() + 1);
        for (int b = 0; b < kBins; b++) {
            if (!counts[i][size_t(b)]) continue;
            const double h = (kPanelH - 20) * double(counts[i][size_t(b)]) / double(top);
            rect(o, kLeft + b * bw + w * (double(i) + 0.5), y0 + kPanelH - h, w, h, colors[i % 3]);
        }
        const LatencySummary s = modes[i].bo_new();
        rect(o, kLeft + 10, y0 + 12 + 18 * double(i), 12, 12, colors[i % 3]);
        text(o, kLeft + 28, y0 + 22 + 18 * double(i),
             modes[i].mode + ": n=" + std::to_string(s.count) + "  p50 " + f("%.2f", s.p50_us) + " us  p99 " +
                 f("%.2f", s.p99_us) + " us  max " + f("%.1f", s.max_us) + " us",
             "font-size=\"12\"");
    }
    const char* labels[] = {"0.1us", "1us", "10us", "100us", "1ms", "10ms", "100ms"};
    for (int d = 0; d < 7; d++) {
        const double x = kLeft + d * 4 * bw;
        o += "<line x1=\"" + f("%.1f", x) + "\" y1=\"" + std::to_string(y0 + kPanelH) + "\" x2=\"" + f("%.1f", x) +
             "\" y2=\"" + std::to_string(y0 + kPanelH + 5) + "\" stroke=\"#333\"/>\n";
        text(o, x, y0 + kPanelH + 16, labels[d], "font-size=\"11\" text-anchor=\"middle\"");
    }
}

} // namespace

std::string render_svg(const RunInfo& info, const std::vector<ModeResult>& modes) {
    const int panels = int(modes.size()) + 1;
    const int height = 60 + panels * (kPanelH + 50) + 30;
    std::string o;
    o += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(kWidth) + "\" height=\"" +
         std::to_string(height) + "\" font-family=\"sans-serif\" font-size=\"13\">\n";
    rect(o, 0, 0, kWidth, height, "white");
    text(o, 20, 28, "fdnc-replay: " + info.workload + " over " + info.transport, "font-size=\"18\" font-weight=\"bold\"");
    text(o, 20, 46, "blue = live buffer range, orange = freed but quarantined until its submits retired",
         "font-size=\"12\" fill=\"#555\"");
    int y = 80;
    for (const ModeResult& m : modes) {
        address_panel(o, m, y);
        y += kPanelH + 50;
    }
    histogram_panel(o, modes, y);
    o += "</svg>\n";
    return o;
}

} // namespace fdnc::replay
