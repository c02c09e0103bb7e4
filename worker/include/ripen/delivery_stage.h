// Where one task of a delivery stands in a worker, from the moment it is read
// off the channel until the worker is done with it: the table the worker's I/O
// loop follows (worker.cc moves a delivery only along these edges and stops
// loudly on any other). A delivery holds one task or a bundle; each task of it
// moves on its own, and the delivery is acked once all are done (AckLedger).
//
//   received ─▶ gating ─▶ admitting ─▶ starting ─▶ ready ─▶ running ─▶ finishing ─▶ done
//      │          │ ▲         ▲           │ │ │                │  ▲        ▲
//      │          ▼ │         │           │ │ └─▶ busy ─────────┼──┼────────┘ (to gating/admitting)
//      │        waiting       │           │ └─▶ copying ◀───────┘  │   (dead: copy confirmed first)
//      └──▶ copying (poison)  └───────────┘ (refused/missing)     └── copying ─▶ finishing | done
//                                 │ ▲
//                                 ▼ │ (not confirmed: kept)
//                             handing_back ─▶ done (its copy confirmed in the queue)
#pragma once

#include <cstddef>

namespace ripen {

enum class DeliveryStage {
  received,      // read off the channel, its envelope decoded
  gating,        // its type's gate (blocking policy) is to be asked
  waiting,       // serial type: waiting its turn in the type's line, unacked
  admitting,     // waiting for room to start here (concurrency + local queue)
  starting,      // its start is to be recorded in Redis
  busy,          // another run holds it under a lease: asked again later
  ready,         // start recorded: waiting for a handler thread (back to starting, to renew
                 // its run lease, if it waited so long that too little of the lease is left)
  running,       // a handler thread has it
  finishing,     // its outcome is to be recorded in Redis
  copying,       // its dead-letter copy awaits the broker's confirm
  done,          // acked, handed back, or left to the broker (its connection is gone)
  handing_back,  // unstarted, and no room here soon: its copy in its queue awaits the broker's confirm
};
inline constexpr size_t kDeliveryStages = 12;

// Whether the worker may move a delivery from `from` to `to`.
bool delivery_may_move(DeliveryStage from, DeliveryStage to) noexcept;
const char* to_string(DeliveryStage s) noexcept;

}  // namespace ripen
