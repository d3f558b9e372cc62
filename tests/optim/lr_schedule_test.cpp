// The learning-rate schedules against their formulas written out in double
// here, and the schedule text's checks.
#include "bnlab/optim/lr_schedule.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <numbers>

#include "bnlab/error.hpp"

namespace bnlab::optim {
namespace {

std::string error_of(const std::function<void()>& body) {
  try {
    body();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(LrSchedule, ConstantIsTheBaseLrAtEveryStep) {
  const LrSchedule schedule("", 0.3, 4);
  for (int64_t e = 0; e < 4; ++e)
    for (int64_t s = 0; s < 3; ++s) EXPECT_EQ(schedule.lr(e, s, 3), 0.3);
  EXPECT_EQ(LrSchedule("constant", 0.3, 4).lr(3, 0, 1), 0.3);
}

TEST(LrSchedule, StepAndMultistepDecayAtTheirEpochs) {
  const LrSchedule step("step:2:0.1", 1.0, 7);
  const double expected_step[7] = {1, 1, 0.1, 0.1, 0.01, 0.01, 0.001};
  const LrSchedule multi("multistep:1,4:0.5", 2.0, 6);
  const double expected_multi[6] = {2, 1, 1, 1, 0.5, 0.5};
  for (int64_t e = 0; e < 7; ++e) {
    EXPECT_NEAR(step.lr(e, 0, 5), expected_step[e], 1e-15) << e;
    EXPECT_EQ(step.lr(e, 4, 5), step.lr(e, 0, 5)) << "one lr per epoch";
  }
  for (int64_t e = 0; e < 6; ++e) EXPECT_EQ(multi.lr(e, 0, 1), expected_multi[e]) << e;
  EXPECT_FALSE(step.per_step());
}

TEST(LrSchedule, CosineAnnealsOverTheEpochsAfterTheWarmup) {
  const int64_t epochs = 10, warmup = 2;
  const LrSchedule schedule("cosine", 0.1, epochs, warmup);
  for (int64_t e = 0; e < warmup; ++e)
    EXPECT_NEAR(schedule.lr(e, 0, 3), 0.1 * (0.01 + 0.99 * double(e) / warmup), 1e-15) << e;
  for (int64_t e = warmup; e < epochs; ++e)
    EXPECT_NEAR(
        schedule.lr(e, 2, 3),
        0.1 * (1 + std::cos(std::numbers::pi * double(e - warmup) / double(epochs - warmup))) / 2,
        1e-15)
        << e;
  EXPECT_EQ(schedule.lr(warmup, 0, 3), 0.1);  // the warmup ends at the base lr
}

// OneCycleLR: from lr/25 up to lr at step 0.3 T - 1, down to lr/25/1e4 at T - 1.
TEST(LrSchedule, OneCycleRisesToTheBaseLrAndEndsFarBelowIt) {
  const int64_t epochs = 5, steps = 20, total = epochs * steps;
  const LrSchedule schedule("onecycle", 0.5, epochs);
  EXPECT_TRUE(schedule.per_step());
  EXPECT_NEAR(schedule.lr(0, 0, steps), 0.5 / 25, 1e-15);
  EXPECT_NEAR(schedule.lr(epochs - 1, steps - 1, steps), 0.5 / 25 / 1e4, 1e-15);
  const double peak = 0.3 * total - 1;  // 29: step 29 is epoch 1, step 9
  EXPECT_NEAR(schedule.lr(1, 9, steps), 0.5, 1e-15);
  double previous = 0.0;
  for (int64_t t = 0; t < total; ++t) {
    const double lr = schedule.lr(t / steps, t % steps, steps);
    if (t <= peak)
      EXPECT_GT(lr, previous) << t;
    else
      EXPECT_LT(lr, previous) << t;
    previous = lr;
  }
}

// A resumed run asks for the lr of a later position first: the answer is the
// same as in an uninterrupted run (no state).
TEST(LrSchedule, TheLrDependsOnlyOnThePosition) {
  const LrSchedule a("onecycle", 0.1, 3), b("onecycle", 0.1, 3);
  const double late = b.lr(2, 5, 8);
  for (int64_t e = 0; e < 3; ++e)
    for (int64_t s = 0; s < 8; ++s) a.lr(e, s, 8);
  EXPECT_EQ(a.lr(2, 5, 8), late);
}

TEST(LrSchedule, BadTextIsNamedWithWhatIsWrong) {
  const std::vector<std::pair<std::string, std::string>> cases{
      {"exponential", "unknown schedule"},
      {"step:0:0.1", "positive integer"},
      {"step:2", "2 ':'-separated"},
      {"step:2:inf", "finite number > 0"},
      {"step:2:-1", "finite number > 0"},
      {"step:x:0.1", "positive integer"},
      {"multistep:3,2:0.1", "increase"},
      {"multistep:1,,2:0.1", "positive integer"},
      {"multistep::0.1", "positive integer"},
      {"cosine:3", "0 ':'-separated"},
      {"step:99999999999999999999:0.5", "positive integer"}};
  for (const auto& [text, why] : cases) {
    const std::string message = error_of([&] { LrSchedule::check_text(text); });
    EXPECT_NE(message.find(why), std::string::npos) << text << ": " << message;
    EXPECT_NE(message.find(text.substr(0, 10)), std::string::npos) << message;
  }
  EXPECT_EQ(error_of([] { LrSchedule::check_text("multistep:2,5,9:0.1"); }), "");
}

TEST(LrSchedule, WarmupMustFitTheRunAndIsRefusedWithOneCycle) {
  EXPECT_NE(error_of([] { LrSchedule("cosine", 0.1, 5, 5); }).find("warmup"), std::string::npos);
  EXPECT_NE(error_of([] { LrSchedule("", 0.1, 5, -1); }).find("warmup"), std::string::npos);
  EXPECT_NE(error_of([] { LrSchedule("onecycle", 0.1, 5, 1); }).find("onecycle"),
            std::string::npos);
  EXPECT_NE(error_of([] { LrSchedule("", INFINITY, 5); }).find("lr"), std::string::npos);
  EXPECT_THROW(LrSchedule("", 0.1, 5).lr(5, 0, 1), Error);
  EXPECT_THROW(LrSchedule("", 0.1, 5).lr(0, 1, 1), Error);
}

}  // namespace
}  // namespace bnlab::optim
