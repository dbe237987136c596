package io.moecluster.gateway;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class AdmissionTest {
  @Test
  void grantsRunningThenQueuesThenRejects() throws Exception {
    Admission a = new Admission(1, 1);
    List<Admission.Permit> granted = new ArrayList<>();
    a.acquire(granted::add);
    Admission.Ticket waiting = a.acquire(granted::add);
    assertEquals(1, granted.size());
    assertEquals(1, a.queued());
    Admission.RejectedException e =
        assertThrows(Admission.RejectedException.class, () -> a.acquire(granted::add));
    assertEquals("server is at capacity: 1 streams running, 1 queued; retry later", e.getMessage());
    granted.getFirst().release();
    granted.getFirst().release(); // exactly once: the second release does nothing
    assertEquals(2, granted.size(), "the waiter got the slot");
    assertEquals(1, a.running());
    assertFalse(waiting.cancel(), "already granted");
    granted.get(1).release();
    assertEquals(0, a.running());
  }

  @Test
  void aWaiterThatLeavesDoesNotTakeTheSlot() throws Exception {
    Admission a = new Admission(1, 2);
    List<Admission.Permit> granted = new ArrayList<>();
    a.acquire(granted::add);
    Admission.Ticket leaving = a.acquire(granted::add);
    assertTrue(leaving.cancel());
    assertEquals(0, a.queued());
    granted.getFirst().release();
    assertEquals(1, granted.size());
    assertEquals(0, a.running());
  }

  @Test
  void slotReleasesAPermitThatArrivesAfterTheCallEnded() throws Exception {
    Admission a = new Admission(1, 1);
    List<Admission.Permit> first = new ArrayList<>();
    a.acquire(first::add);
    StreamSession.Slot slot = new StreamSession.Slot();
    slot.ticket(a.acquire(p -> slot.offer(p)));
    // The call ends while queued, then the slot frees: nothing leaks.
    slot.close();
    first.getFirst().release();
    assertEquals(0, a.running());
    assertEquals(0, a.queued());
  }
}
