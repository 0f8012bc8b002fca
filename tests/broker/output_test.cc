#include "plugd/broker/output.h"

#include <sys/wait.h>

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "plugd/broker/launcher.h"

namespace plugd::broker {
namespace {

using Lines = std::vector<std::pair<std::string, bool>>;

Lines Split(LineSplitter& splitter, const std::vector<std::string>& chunks,
            bool flush = true) {
  Lines lines;
  auto emit = [&](absl::string_view text, bool truncated) {
    lines.emplace_back(std::string(text), truncated);
  };
  for (const std::string& chunk : chunks) splitter.Feed(chunk, emit);
  if (flush) splitter.Flush(emit);
  return lines;
}

TEST(LineSplitterTest, SplitsLinesAcrossChunks) {
  LineSplitter splitter(100);
  EXPECT_EQ(
      Split(splitter, {"alpha\nbe", "ta\n\ngam", "ma"}),
      (Lines{
          {"alpha", false}, {"beta", false}, {"", false}, {"gamma", false}}));
}

TEST(LineSplitterTest, CutsALongLineOnceAndDiscardsItsRest) {
  LineSplitter splitter(4);
  EXPECT_EQ(Split(splitter, {"abcdefgh", "ijk\nxy\nabcd\n"}),
            (Lines{{"abcd", true}, {"xy", false}, {"abcd", false}}));
}

TEST(LineSplitterTest, CutsALongLineThatEndsInTheSameChunk) {
  LineSplitter splitter(3);
  EXPECT_EQ(Split(splitter, {"abcdef\nok\n"}),
            (Lines{{"abc", true}, {"ok", false}}));
}

TEST(LineSplitterTest, FlushEmitsThePartialLineOnlyOnce) {
  LineSplitter splitter(10);
  Lines lines;
  auto emit = [&](absl::string_view text, bool truncated) {
    lines.emplace_back(std::string(text), truncated);
  };
  splitter.Feed("tail", emit);
  EXPECT_TRUE(lines.empty());
  splitter.Flush(emit);
  splitter.Flush(emit);
  EXPECT_EQ(lines, (Lines{{"tail", false}}));
}

TEST(DetectLevelTest, JsonFields) {
  using log::Level;
  EXPECT_EQ(DetectLevel(R"({"msg":"x","level":"warn"})", Level::kInfo),
            Level::kWarning);
  EXPECT_EQ(
      DetectLevel(R"({"@level": "ERROR", "@message": "x"})", Level::kInfo),
      Level::kError);
  EXPECT_EQ(DetectLevel(R"({"severity":"debug"})", Level::kInfo),
            Level::kDebug);
  EXPECT_EQ(DetectLevel(R"({"level":50,"msg":"pino"})", Level::kInfo),
            Level::kError);
  EXPECT_EQ(DetectLevel(R"({"msg":"level is fine"})", Level::kInfo),
            Level::kInfo);
}

TEST(DetectLevelTest, Prefixes) {
  using log::Level;
  EXPECT_EQ(DetectLevel("[WARN] disk almost full", Level::kInfo),
            Level::kWarning);
  EXPECT_EQ(DetectLevel("[error] boom", Level::kInfo), Level::kError);
  EXPECT_EQ(DetectLevel("WARNING: careful", Level::kInfo), Level::kWarning);
  EXPECT_EQ(DetectLevel("  debug: details", Level::kInfo), Level::kDebug);
  EXPECT_EQ(DetectLevel("http://example.com", Level::kInfo), Level::kInfo);
  EXPECT_EQ(DetectLevel("plain text", Level::kError), Level::kError);
  EXPECT_EQ(DetectLevel("", Level::kInfo), Level::kInfo);
}

OutputLine Line(std::string text, absl::Time time) {
  OutputLine line;
  line.time = time;
  line.text = std::move(text);
  return line;
}

TEST(OutputCaptureTest, RingEvictsOldestLinesByBytes) {
  OutputOptions options;
  options.ring_bytes = 10;
  options.forward_bytes_per_second = 0;
  options.sink = [](const std::string&, const OutputLine&) {};
  OutputCapture capture("p", options);
  const absl::Time t = absl::Now();
  for (std::string text : {"aaaa", "bbbb", "cccc", "dddd", "eeee"}) {
    capture.Add(Line(text, t));
  }
  EXPECT_LE(capture.ring_bytes(), 10u);
  EXPECT_EQ(capture.lines_total(), 5u);
  EXPECT_EQ(capture.lines_evicted(), 3u);
  std::vector<OutputLine> tail = capture.Tail();
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(tail[0].text, "dddd");
  EXPECT_EQ(tail[1].text, "eeee");
  ASSERT_EQ(capture.Tail(1).size(), 1u);
  EXPECT_EQ(capture.Tail(1)[0].text, "eeee");
}

TEST(OutputCaptureTest, RateLimitDropsAndReportsTheDrops) {
  OutputOptions options;
  options.forward_bytes_per_second = 100;  // a line of 9 bytes costs 10
  std::vector<OutputLine> forwarded;
  options.sink = [&](const std::string& plugin, const OutputLine& line) {
    EXPECT_EQ(plugin, "noisy");
    forwarded.push_back(line);
  };
  OutputCapture capture("noisy", options);
  const absl::Time t = absl::Now() + absl::Seconds(1);  // bucket full by then
  for (int i = 0; i < 20; ++i) capture.Add(Line("123456789", t));
  EXPECT_EQ(forwarded.size(), 10u);
  EXPECT_EQ(capture.lines_rate_dropped(), 10u);
  EXPECT_EQ(capture.Tail().size(), 20u);  // the ring keeps them all

  capture.Add(Line("later", t + absl::Seconds(2)));
  ASSERT_EQ(forwarded.size(), 12u);
  EXPECT_EQ(forwarded[10].level, log::Level::kWarning);
  EXPECT_EQ(forwarded[10].text,
            "plugin noisy: 10 log lines dropped (over forward_bytes_per_second "
            "= 100)");
  EXPECT_EQ(forwarded[11].text, "later");
}

TEST(OutputCaptureTest, SubscribersSeeEveryLineUntilUnsubscribed) {
  OutputOptions options;
  options.sink = [](const std::string&, const OutputLine&) {};
  OutputCapture capture("p", options);
  std::vector<std::string> seen;
  int id = capture.Subscribe(
      [&](const OutputLine& line) { seen.push_back(line.text); });
  capture.Add(Line("one", absl::Now()));
  capture.Unsubscribe(id);
  capture.Add(Line("two", absl::Now()));
  EXPECT_EQ(seen, std::vector<std::string>{"one"});
}

TEST(ExitStatusTest, FromWaitStatus) {
  ExitStatus exited = ExitStatus::FromWaitStatus(3 << 8);
  EXPECT_FALSE(exited.signaled);
  EXPECT_EQ(exited.code, 3);
  EXPECT_FALSE(exited.success());
  EXPECT_EQ(exited.ToString(), "exited with code 3");

  ExitStatus killed = ExitStatus::FromWaitStatus(SIGKILL);
  EXPECT_TRUE(killed.signaled);
  EXPECT_EQ(killed.signal, 9);
  EXPECT_EQ(killed.ToString(), "killed by signal 9 (SIGKILL)");

  ExitStatus core = ExitStatus::FromWaitStatus(SIGSEGV | 0x80);
  EXPECT_TRUE(core.core_dumped);
  EXPECT_EQ(core.ToString(), "killed by signal 11 (SIGSEGV, core dumped)");

  EXPECT_TRUE(ExitStatus::FromWaitStatus(0).success());
}

TEST(ExitStatusTest, RealWaitStatusesOfExit9AndSigkillDiffer) {
  pid_t a = ::fork();
  if (a == 0) ::_exit(9);
  pid_t b = ::fork();
  if (b == 0) {
    ::raise(SIGKILL);
    ::_exit(0);
  }
  int sa = 0, sb = 0;
  ASSERT_EQ(::waitpid(a, &sa, 0), a);
  ASSERT_EQ(::waitpid(b, &sb, 0), b);
  EXPECT_EQ(ExitStatus::FromWaitStatus(sa).ToString(), "exited with code 9");
  EXPECT_EQ(ExitStatus::FromWaitStatus(sb).ToString(),
            "killed by signal 9 (SIGKILL)");
}

}  // namespace
}  // namespace plugd::broker
