// Progress lines when stderr is not a terminal (as under ctest): nothing
// between the five-second marks, one final line with the label and the status.
#include <gtest/gtest.h>

#include <string>

#include "bnlab/train/progress.hpp"

namespace bnlab {
namespace {

TEST(Progress, PlainOutputPrintsOnlyTheFinalLineForShortWork) {
  if (Progress::is_terminal()) GTEST_SKIP() << "stderr is a terminal: the bar is redrawn instead";
  testing::internal::CaptureStderr();
  Progress progress("epoch 3/10", 100, "img");
  for (int64_t step = 1; step <= 100; ++step) progress.update(step, step * 64, "loss 0.412");
  progress.finish("loss 0.400");
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(out.find('\r'), std::string::npos) << out;
  EXPECT_EQ(out.find("ETA"), std::string::npos) << out;
  ASSERT_EQ(out.back(), '\n');
  EXPECT_EQ(out.find('\n'), out.size() - 1) << "one line only: " << out;
  EXPECT_EQ(out.rfind("epoch 3/10 [####################] 100% loss 0.400 ", 0), 0u) << out;
}

}  // namespace
}  // namespace bnlab
