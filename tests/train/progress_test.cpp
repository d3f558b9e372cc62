// Progress lines when stderr is not a terminal (as under ctest): nothing
// between the five-second marks, one final line with the label and the status.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
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

TEST(Progress, LossTextIsFixedPointThenScientificAndNamesNonFinite) {
  EXPECT_EQ(loss_text(0.41234), "0.4123");
  EXPECT_EQ(loss_text(99999.0), "99999.0000");
  EXPECT_EQ(loss_text(1.2e30), "1.2e+30");  // not 1200000000000000019884624838656.0000
  EXPECT_EQ(loss_text(123456.0), "1.235e+05");
  EXPECT_EQ(loss_text(std::nan("")), "nan");
  EXPECT_EQ(loss_text(-std::numeric_limits<double>::infinity()), "-inf");
}

}  // namespace
}  // namespace bnlab
