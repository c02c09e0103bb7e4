#include "ripen/delivery_stage.h"

#include <array>

namespace ripen {
namespace {

using S = DeliveryStage;
constexpr unsigned bit(S s) { return 1u << static_cast<unsigned>(s); }

// kNext[from]: the stages a delivery may move to. Every stage but `done` may be
// abandoned to `done` when the worker shuts down or its connection broke (the
// broker hands the delivery on): the table lists those too.
constexpr std::array<unsigned, kDeliveryStages> kNext = {
    /* received  */ bit(S::gating) | bit(S::admitting) | bit(S::copying) | bit(S::done),
    /* gating    */ bit(S::admitting) | bit(S::waiting) | bit(S::finishing) | bit(S::gating) | bit(S::done),
    /* waiting   */ bit(S::gating) | bit(S::done),
    /* admitting */ bit(S::starting) | bit(S::handing_back) | bit(S::done),
    /* starting  */ bit(S::ready) | bit(S::busy) | bit(S::copying) | bit(S::starting) | bit(S::done),
    /* busy      */ bit(S::gating) | bit(S::admitting) | bit(S::done),
    /* ready     */ bit(S::running) | bit(S::finishing),
    /* running   */ bit(S::finishing) | bit(S::copying) | bit(S::starting),
    /* finishing */ bit(S::finishing) | bit(S::done),
    /* copying   */ bit(S::finishing) | bit(S::copying) | bit(S::done),
    /* done      */ 0u,
    /* handing_back */ bit(S::admitting) | bit(S::done),
};

constexpr std::array<const char*, kDeliveryStages> kNames = {"received",  "gating",  "waiting", "admitting",
                                                             "starting",  "busy",    "ready",   "running",
                                                             "finishing", "copying", "done",    "handing_back"};

}  // namespace

bool delivery_may_move(DeliveryStage from, DeliveryStage to) noexcept {
  return (kNext[static_cast<size_t>(from)] & bit(to)) != 0;
}

const char* to_string(DeliveryStage s) noexcept { return kNames[static_cast<size_t>(s)]; }

}  // namespace ripen
