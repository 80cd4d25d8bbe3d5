// What a connection leaves in its worker's row as its life goes on: the time from accept to
// the 101 it relays, the time its backend connect took, and when it ends its kind (per
// backend), why it ended and how long it lived. Histograms in the row, so a scrape reads them
// without asking any process. Worker only, on the loop thread.
#pragma once

#include "shm/layout.h"
#include "worker/session.h"

namespace wslb::worker {

// At accept, at the start of a backend connect, at its success, at the 101.
void note_accepted(session* s);
void note_connect_started(session* s);
void note_connected(session* s);
void note_upgraded(session* s);
// Why the connection is ending, when the code that ends it knows; the first cause wins.
void note_cause(session* s, shm::close_cause cause);
// At close: counts kind, cause (when none was noted: whichever peer sent its FIN, else an
// error) and lifetime. Called once, by close_session; nothing for a tunnel handed over.
void record_end(session* s);

}  // namespace wslb::worker
