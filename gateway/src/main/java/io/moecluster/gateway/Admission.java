package io.moecluster.gateway;

import java.util.ArrayDeque;
import java.util.Deque;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;

/**
 * The gateway's bounded gate for Generate/Complete streams: at most {@code maxRunning} hold a
 * {@link Permit} at once and at most {@code maxQueued} wait for one (first come, first served);
 * anything beyond is rejected. A permit is released exactly once, whatever ends the stream, and its
 * release hands the slot to the oldest waiter.
 */
public final class Admission {
  private final int maxRunning;
  private final int maxQueued;
  private final Deque<Ticket> queue = new ArrayDeque<>();
  private int running;

  public Admission(int maxRunning, int maxQueued) {
    this.maxRunning = maxRunning;
    this.maxQueued = maxQueued;
  }

  /** A slot held by one stream. */
  public final class Permit {
    private final AtomicBoolean released = new AtomicBoolean();

    private Permit() {}

    /** Frees the slot; later calls do nothing. */
    public void release() {
      if (released.compareAndSet(false, true)) {
        releaseSlot();
      }
    }

    public boolean isReleased() {
      return released.get();
    }
  }

  /** A place in the queue, or a slot already granted. */
  public final class Ticket {
    private final Consumer<Permit> onGranted;
    private boolean done;

    private Ticket(Consumer<Permit> onGranted) {
      this.onGranted = onGranted;
    }

    /**
     * Leaves the queue (the client went away while waiting). Returns false when the permit was
     * already granted: the holder of the permit must release it.
     */
    public boolean cancel() {
      synchronized (Admission.this) {
        if (done) {
          return false;
        }
        done = true;
        queue.remove(this);
        return true;
      }
    }
  }

  /** Why {@link #acquire} refused. */
  public static final class RejectedException extends Exception {
    private RejectedException(String message) {
      super(message, null, false, false);
    }
  }

  /**
   * Asks for a slot. {@code onGranted} gets the permit, on this thread when a slot is free now, or
   * later on the thread that releases one; the returned ticket lets a waiter leave the queue.
   *
   * @throws RejectedException when running and queued are both full
   */
  public Ticket acquire(Consumer<Permit> onGranted) throws RejectedException {
    Ticket ticket = new Ticket(onGranted);
    synchronized (this) {
      if (running >= maxRunning) {
        if (queue.size() >= maxQueued) {
          throw new RejectedException(
              "server is at capacity: "
                  + running
                  + " streams running, "
                  + queue.size()
                  + " queued; retry later");
        }
        queue.addLast(ticket);
        return ticket;
      }
      running++;
      ticket.done = true;
    }
    onGranted.accept(new Permit());
    return ticket;
  }

  private void releaseSlot() {
    Ticket next;
    synchronized (this) {
      next = queue.pollFirst();
      if (next == null) {
        running--;
        return;
      }
      next.done = true; // the slot passes to the waiter: running stays the same
    }
    next.onGranted.accept(new Permit());
  }

  public synchronized int running() {
    return running;
  }

  public synchronized int queued() {
    return queue.size();
  }
}
