package io.moecluster.router;

import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.codec.DataFrames;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedSelectorException;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.BooleanSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A router's connections to the expert nodes' data channels ({@code moe.expert.data-channel}),
 * one per endpoint, opened on first use and again after a failure. A call returns the entity's
 * {@link ExpertReply}, or fails with {@link NotHostedException} (the entity is not on that node)
 * or an {@link IOException} (the connection could not be opened or was lost), or a {@link
 * TimeoutException} (no answer in time); either way the caller sends the request through Cluster
 * Sharding instead. Thread-safe.
 *
 * <p><b>Who reads the replies.</b> The connections share one selector, and one thread at a time
 * reads them. A thread that waits for its calls ({@link #enter}, {@link #awaitReplies}, {@link
 * #leave}: the router's engine, for a layer's experts) reads them itself, so a reply wakes only
 * the thread that needs it; a reader thread of its own would be one more wake-up a reply, and on a
 * small host every wake-up queues for a core. Calls that nobody waits for that way (a hedge's
 * loser after its layer, or callers that only hold the futures) are read by a background thread,
 * which sleeps while no call is pending and hands the selector over to a waiting caller.
 */
final class ExpertDataChannels implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ExpertDataChannels.class);
  private static final Duration RETRY_CONNECT = Duration.ofSeconds(2);
  // How long a call waits for its connection to open. On a live node a connect and its greeting
  // take well under a millisecond; this leaves a loaded machine's scheduler room, and a call that
  // waits longer goes through Artery while the connect goes on.
  private static final long CONNECT_WAIT_NANOS = TimeUnit.MILLISECONDS.toNanos(100);
  private static final long BACKGROUND_SELECT_MILLIS = 100; // re-checks whether a caller took over
  // Calls queued beyond this go out before the flush, as a 64 KiB stream buffer would send them.
  private static final int EARLY_FLUSH_BYTES = 64 << 10;

  /** Runs a task once a delay has passed; the returned action cancels it. */
  @FunctionalInterface
  interface Timers {
    Runnable after(Duration delay, Runnable task);
  }

  private final Duration connectTimeout;
  private final Duration retryConnect;
  private final long connectWaitNanos;
  private final Timers timers;
  private final Map<String, DataChannelConnection> connections = new ConcurrentHashMap<>();
  // Endpoints whose connect failed, until when (System.nanoTime) calls to them fail at once: a
  // host that does not answer must not cost every request the connect timeout.
  private final Map<String, Long> downUntil = new ConcurrentHashMap<>();
  // Connects in progress, by endpoint (see opening).
  private final Map<String, CompletableFuture<DataChannelConnection>> connecting = new ConcurrentHashMap<>();
  private final Selector selector;
  private final ReentrantLock reading = new ReentrantLock(); // held by the thread that selects
  private final AtomicInteger callers = new AtomicInteger(); // threads between enter and leave
  private volatile boolean callerWaiting; // a caller wants the selector from the background reader
  private volatile Thread selecting; // the thread in (or about to be in) a select
  private final Thread background;
  private volatile boolean closed;

  /**
   * @param connectTimeout how long opening a connection may take (a dead host does not answer)
   * @param timers where the calls' timeouts wait ({@link SweptTimeouts} in a router: setting and
   *     cancelling one wakes no thread)
   */
  ExpertDataChannels(Duration connectTimeout, Timers timers) {
    this(connectTimeout, RETRY_CONNECT, timers);
  }

  /** @param retryConnect after a failed connect, how long calls to that endpoint fail at once */
  ExpertDataChannels(Duration connectTimeout, Duration retryConnect, Timers timers) {
    this(connectTimeout, retryConnect, Duration.ofNanos(CONNECT_WAIT_NANOS), timers);
  }

  /**
   * @param connectWait how long a call waits for its connection to open before it fails over
   *     (tests on a loaded machine give more than the router's 100 ms)
   */
  ExpertDataChannels(Duration connectTimeout, Duration retryConnect, Duration connectWait, Timers timers) {
    this.connectTimeout = connectTimeout;
    this.retryConnect = retryConnect;
    this.connectWaitNanos = connectWait.toNanos();
    this.timers = timers;
    try {
      this.selector = Selector.open();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot open a selector for the expert data channels", e);
    }
    this.background = new Thread(this::readInBackground, "moe-data-channels");
    background.setDaemon(true);
    background.start();
  }

  /** The entity is not on the node the call went to (it moved, or has not started there yet). */
  static final class NotHostedException extends RuntimeException {
    NotHostedException(String entityId, String endpoint) {
      super("expert entity " + entityId + " is not on the node of data channel " + endpoint, null, false, false);
    }
  }

  /**
   * Queues {@code request} for {@code entityId} on the data channel at {@code endpoint}
   * ("host:port"); {@link #flush} sends it (or this call, once 64 KiB wait to go). Unanswered after {@code timeout}, the future fails with
   * a {@link TimeoutException} (a paused or overloaded node: the connection is kept).
   */
  CompletableFuture<ExpertReply> call(String endpoint, String entityId, ComputeExperts request, Duration timeout) {
    if (closed) {
      return CompletableFuture.failedFuture(new IOException("the router's data channels are closed"));
    }
    DataChannelConnection c = connections.get(endpoint);
    if (c == null || !c.open()) {
      Long until = downUntil.get(endpoint);
      if (until != null && System.nanoTime() - until < 0) {
        return CompletableFuture.failedFuture(new IOException("the data channel to " + endpoint
            + " could not be opened a moment ago; not trying again before " + retryConnect.toMillis() + " ms"));
      }
      try {
        c = opening(endpoint).get(connectWaitNanos, TimeUnit.NANOSECONDS);
      } catch (TimeoutException e) {
        return CompletableFuture.failedFuture(new IOException("the data channel to " + endpoint
            + " is still opening after " + TimeUnit.NANOSECONDS.toMillis(connectWaitNanos) + " ms"));
      } catch (ExecutionException e) {
        return CompletableFuture.failedFuture(e.getCause());
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return CompletableFuture.failedFuture(new IOException("interrupted while opening the data channel to "
            + endpoint));
      }
    }
    CompletableFuture<ExpertReply> reply = c.call(entityId, request, timeout);
    if (c.unflushedBytes() >= EARLY_FLUSH_BYTES) {
      flushed(c.flush()); // a prefill layer's calls: the node starts on the first while the rest are encoded
    }
    if (callers.get() == 0) {
      LockSupport.unpark(background); // nobody will wait for it here: the background reads it
    }
    return reply;
  }

  /**
   * Queues a prefetch hint for {@code entityId} on the data channel at {@code endpoint}, to leave
   * with the next {@link #flush}; never answered.
   *
   * @return false when the channel cannot take it now (not open, or failed a moment ago): the
   *     caller sends the hint another way
   */
  boolean hint(String endpoint, String entityId) {
    DataChannelConnection c = connections.get(endpoint);
    if (closed || c == null || !c.open()) {
      return false; // hints never open a connection: the next call does
    }
    return c.hint(entityId);
  }

  /**
   * Sends the calls queued since the last flush, each connection's in one write: the calls of a
   * layer reach a node together, and it computes them in one pass.
   */
  void flush() {
    boolean left = false;
    for (var e : connections.entrySet()) {
      DataChannelConnection c = e.getValue();
      if (!c.open()) {
        // Failed: its calls have failed over, and the next call to its endpoint opens a new one.
        // Dropped here, so a router whose expert nodes come back on new addresses (pods) keeps
        // neither their buffers nor a longer loop per layer.
        connections.remove(e.getKey(), c);
        continue;
      }
      left |= c.flush();
    }
    flushed(left);
  }

  /** The connections held, open or failed and not yet dropped (for tests). */
  int connectionCount() {
    return connections.size();
  }

  private void flushed(boolean left) {
    if (left) { // the reading thread writes the rest as the sockets drain
      wakeReader();
      if (callers.get() == 0) {
        LockSupport.unpark(background);
      }
    }
  }

  /** Calls waiting for an answer, over all connections. */
  int inFlight() {
    int n = 0;
    for (DataChannelConnection c : connections.values()) {
      n += c.inFlight();
    }
    return n;
  }

  /**
   * The calling thread will wait for its calls with {@link #awaitReplies} until it calls {@link
   * #leave}: meanwhile the background reader leaves the replies to it.
   */
  void enter() {
    callers.incrementAndGet();
  }

  /** The calling thread waits no more; the background reader reads what is still pending. */
  void leave() {
    if (callers.decrementAndGet() == 0 && needsReader()) {
      LockSupport.unpark(background);
    }
  }

  /**
   * Reads replies on the calling thread (between {@link #enter} and {@link #leave}): waits until a
   * connection has something to read (and reads it, completing its calls' futures here), {@link
   * #wakeReader} is called, {@code nanos} pass or {@code ready} is already true.
   *
   * @return false when no call is pending on any connection, without waiting: the caller waits
   *     for its futures another way
   */
  boolean awaitReplies(long nanos, BooleanSupplier ready) {
    if (closed || !needsReader()) {
      return false;
    }
    if (!reading.tryLock()) {
      callerWaiting = true; // the background reader (or another caller) lets go at its next wake
      selector.wakeup();
      try {
        if (!reading.tryLock(nanos, TimeUnit.NANOSECONDS)) {
          return true;
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return true;
      } finally {
        callerWaiting = false;
      }
    }
    try {
      selecting = Thread.currentThread();
      // After selecting is set: whoever makes ready true from now on also wakes the selector.
      if (!ready.getAsBoolean()) {
        selectOnce(nanos);
      }
    } finally {
      selecting = null;
      reading.unlock();
    }
    return true;
  }

  /**
   * Wakes a thread blocked in {@link #awaitReplies} (other than the calling one): something it
   * waits for besides the replies has happened. Cheap when nobody selects.
   */
  void wakeReader() {
    Thread t = selecting;
    if (t != null && t != Thread.currentThread()) {
      selector.wakeup();
    }
  }

  private boolean needsReader() {
    for (DataChannelConnection c : connections.values()) {
      if (c.needsReader()) {
        return true;
      }
    }
    return false;
  }

  /** One select and what it found; the caller holds {@link #reading}. */
  private void selectOnce(long nanos) {
    try {
      if (nanos <= 0) {
        selector.selectNow(this::ready);
      } else {
        selector.select(this::ready, Math.max(1, TimeUnit.NANOSECONDS.toMillis(nanos + 999_999)));
      }
    } catch (IOException | ClosedSelectorException e) {
      if (!closed) {
        log.warn("Expert data channels: select failed", e);
      }
    }
  }

  private void ready(SelectionKey key) {
    DataChannelConnection c = (DataChannelConnection) key.attachment();
    try {
      if (key.isValid() && key.isWritable()) {
        c.writeReady();
      }
      if (key.isValid() && key.isReadable()) {
        c.readReady();
      }
    } catch (IOException | RuntimeException e) { // a reply that does not parse is a broken peer too
      c.fail(new IOException("data channel to " + c.endpoint() + " lost: " + e.getMessage(), e));
    }
  }

  private void readInBackground() {
    while (!closed) {
      if (callers.get() > 0 || !needsReader() || !reading.tryLock()) {
        LockSupport.park(this); // unparked by a call or a flush nobody waits for, and by leave
        continue;
      }
      try {
        while (!closed && !callerWaiting && callers.get() == 0 && needsReader()) {
          selecting = Thread.currentThread();
          selectOnce(TimeUnit.MILLISECONDS.toNanos(BACKGROUND_SELECT_MILLIS));
        }
      } finally {
        selecting = null;
        reading.unlock();
      }
    }
  }

  /**
   * The connect to {@code endpoint} in progress, started if none is: on a thread of its own, so a
   * host that does not answer (the address of a deleted pod) costs a caller {@link
   * #CONNECT_WAIT_NANOS}, not the connect timeout. A connect that succeeds later serves the calls
   * that follow; one that fails stops calls to the endpoint for {@code retryConnect}.
   */
  private CompletableFuture<DataChannelConnection> opening(String endpoint) {
    CompletableFuture<DataChannelConnection> mine = new CompletableFuture<>();
    CompletableFuture<DataChannelConnection> current = connecting.putIfAbsent(endpoint, mine);
    if (current != null) {
      return current;
    }
    Thread.ofVirtual().name("moe-data-channel-connect").start(() -> {
      try {
        DataChannelConnection c = connect(endpoint);
        connections.put(endpoint, c);
        if (closed) { // close() ran during the connect: it may not have seen this connection
          connections.remove(endpoint, c);
          c.fail(new IOException("the router's data channels are closed"));
          mine.completeExceptionally(new IOException("the router's data channels are closed"));
          return;
        }
        downUntil.remove(endpoint);
        mine.complete(c);
      } catch (UncheckedIOException e) {
        downUntil.put(endpoint, System.nanoTime() + retryConnect.toNanos());
        mine.completeExceptionally(e.getCause());
      } catch (RuntimeException | Error e) {
        downUntil.put(endpoint, System.nanoTime() + retryConnect.toNanos());
        mine.completeExceptionally(new IOException("cannot open the data channel to " + endpoint + ": " + e, e));
      } finally {
        connecting.remove(endpoint, mine);
      }
    });
    return mine;
  }

  private DataChannelConnection connect(String endpoint) {
    int colon = endpoint.lastIndexOf(':');
    if (colon <= 0) {
      throw new UncheckedIOException(new IOException("bad data channel endpoint '" + endpoint + "'"));
    }
    String host = endpoint.substring(0, colon).replace("[", "").replace("]", "");
    SocketChannel channel = null;
    try {
      int port = Integer.parseInt(endpoint.substring(colon + 1));
      channel = SocketChannel.open();
      channel.socket().setTcpNoDelay(true);
      channel.socket().connect(new InetSocketAddress(host, port), (int) Math.max(1, connectTimeout.toMillis()));
      channel.socket().setSoTimeout((int) Math.max(1, connectTimeout.toMillis())); // for the greeting only
      ByteBuffer greeting = ByteBuffer.wrap(DataFrames.GREETING);
      while (greeting.hasRemaining()) {
        channel.write(greeting);
      }
      DataFrames.expectGreeting(channel.socket().getInputStream());
      channel.configureBlocking(false);
      DataChannelConnection c = new DataChannelConnection(endpoint, channel, timers);
      c.registered(channel.register(selector, SelectionKey.OP_READ, c));
      selector.wakeup(); // a select already in progress does not see a new channel
      log.debug("Data channel to {} open", endpoint);
      return c;
    } catch (IOException | RuntimeException e) {
      if (channel != null) {
        try {
          channel.close();
        } catch (IOException ignored) {
          // failed anyway
        }
      }
      IOException io = e instanceof IOException ioe ? ioe : new IOException(e.getMessage(), e);
      throw new UncheckedIOException(new IOException("cannot open the data channel to " + endpoint + ": "
          + io.getMessage(), io));
    }
  }

  /** Closes every connection; their calls in flight fail. */
  @Override
  public void close() {
    closed = true;
    connections.values().forEach(c -> c.fail(new IOException("the router's data channels are closed")));
    connections.clear();
    LockSupport.unpark(background);
    selector.wakeup();
    try {
      background.join(TimeUnit.SECONDS.toMillis(1));
      selector.close();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (IOException e) {
      log.debug("Closing the data channels' selector", e);
    }
  }
}
