package io.moecluster.router;

import io.moecluster.proto.cluster.v1.ComputeExperts;
import io.moecluster.proto.cluster.v1.ExpertCall;
import io.moecluster.proto.cluster.v1.ExpertCallReply;
import io.moecluster.proto.cluster.v1.ExpertReply;
import io.moecluster.proto.codec.DataFrames;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A router's connections to the expert nodes' data channels ({@code moe.expert.data-channel}),
 * one per endpoint, opened on first use and again after a failure. A call returns the entity's
 * {@link ExpertReply}, or fails with {@link NotHostedException} (the entity is not on that node)
 * or an {@link IOException} (the connection could not be opened or was lost), or a {@link
 * TimeoutException} (no answer in time); either way the caller sends the request through Cluster
 * Sharding instead. Thread-safe.
 */
final class ExpertDataChannels implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ExpertDataChannels.class);
  private static final Duration RETRY_CONNECT = Duration.ofSeconds(2);

  /** Runs a task once a delay has passed; the returned action cancels it. */
  @FunctionalInterface
  interface Timers {
    Runnable after(Duration delay, Runnable task);
  }

  private final Duration connectTimeout;
  private final Duration retryConnect;
  private final Timers timers;
  private final Map<String, Connection> connections = new ConcurrentHashMap<>();
  // Endpoints whose connect failed, until when (System.nanoTime) calls to them fail at once: a
  // host that does not answer must not cost every request the connect timeout.
  private final Map<String, Long> downUntil = new ConcurrentHashMap<>();
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
    this.connectTimeout = connectTimeout;
    this.retryConnect = retryConnect;
    this.timers = timers;
  }

  /** The entity is not on the node the call went to (it moved, or has not started there yet). */
  static final class NotHostedException extends RuntimeException {
    NotHostedException(String entityId, String endpoint) {
      super("expert entity " + entityId + " is not on the node of data channel " + endpoint, null, false, false);
    }
  }

  /**
   * Queues {@code request} for {@code entityId} on the data channel at {@code endpoint}
   * ("host:port"); {@link #flush} sends it. Unanswered after {@code timeout}, the future fails with
   * a {@link TimeoutException} (a paused or overloaded node: the connection is kept).
   */
  CompletableFuture<ExpertReply> call(String endpoint, String entityId, ComputeExperts request, Duration timeout) {
    if (closed) {
      return CompletableFuture.failedFuture(new IOException("the router's data channels are closed"));
    }
    Connection c = connections.get(endpoint);
    if (c == null || !c.open()) {
      Long until = downUntil.get(endpoint);
      if (until != null && System.nanoTime() - until < 0) {
        return CompletableFuture.failedFuture(new IOException("the data channel to " + endpoint
            + " could not be opened a moment ago; not trying again before " + retryConnect.toMillis() + " ms"));
      }
      try {
        c = connections.compute(endpoint, (k, old) -> old != null && old.open() ? old : connect(k));
        downUntil.remove(endpoint);
      } catch (UncheckedIOException e) {
        downUntil.put(endpoint, System.nanoTime() + retryConnect.toNanos());
        return CompletableFuture.failedFuture(e.getCause());
      }
    }
    return c.call(entityId, request, timeout);
  }

  /**
   * Queues a prefetch hint for {@code entityId} on the data channel at {@code endpoint}, to leave
   * with the next {@link #flush}; never answered.
   *
   * @return false when the channel cannot take it now (not open, or failed a moment ago): the
   *     caller sends the hint another way
   */
  boolean hint(String endpoint, String entityId) {
    Connection c = connections.get(endpoint);
    if (closed || c == null || !c.open()) {
      return false; // hints never open a connection: the next call does
    }
    return c.hint(entityId);
  }

  /**
   * Sends the calls queued since the last flush, each connection's in one write: the calls of a
   * layer reach a node together, and it runs them side by side.
   */
  void flush() {
    for (Connection c : connections.values()) {
      c.flush();
    }
  }

  /** Calls waiting for an answer, over all connections. */
  int inFlight() {
    int n = 0;
    for (Connection c : connections.values()) {
      n += c.pending.size();
    }
    return n;
  }

  private Connection connect(String endpoint) {
    int colon = endpoint.lastIndexOf(':');
    if (colon <= 0) {
      throw new UncheckedIOException(new IOException("bad data channel endpoint '" + endpoint + "'"));
    }
    String host = endpoint.substring(0, colon).replace("[", "").replace("]", "");
    Socket socket = new Socket();
    try {
      int port = Integer.parseInt(endpoint.substring(colon + 1));
      socket.setTcpNoDelay(true);
      socket.connect(new InetSocketAddress(host, port), (int) Math.max(1, connectTimeout.toMillis()));
      socket.setSoTimeout((int) Math.max(1, connectTimeout.toMillis())); // for the greeting only
      OutputStream out = new BufferedOutputStream(socket.getOutputStream(), 64 << 10);
      out.write(DataFrames.GREETING);
      out.flush();
      DataInputStream in = new DataInputStream(new BufferedInputStream(socket.getInputStream(), 64 << 10));
      DataFrames.expectGreeting(in);
      socket.setSoTimeout(0); // replies may be seconds apart: calls have their own timeouts
      Connection c = new Connection(endpoint, socket, in, out, timers);
      c.start();
      log.debug("Data channel to {} open", endpoint);
      return c;
    } catch (IOException | RuntimeException e) {
      try {
        socket.close();
      } catch (IOException ignored) {
        // failed anyway
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
  }

  /** One connection: calls are written under its lock, replies read by its own thread. */
  private static final class Connection {
    private final String endpoint;
    private final Socket socket;
    private final DataInputStream in;
    private final OutputStream out;
    private final Timers timers;
    private final AtomicLong ids = new AtomicLong();
    private final Map<Long, Pending> pending = new ConcurrentHashMap<>();
    private volatile IOException failure; // set once the connection is gone
    private boolean unflushed; // guarded by out

    private record Pending(String entityId, CompletableFuture<ExpertReply> reply) {}

    Connection(String endpoint, Socket socket, DataInputStream in, OutputStream out, Timers timers) {
      this.endpoint = endpoint;
      this.socket = socket;
      this.in = in;
      this.out = out;
      this.timers = timers;
    }

    boolean open() {
      return failure == null;
    }

    void start() {
      Thread reader = new Thread(this::readLoop, "moe-data-channel-" + endpoint);
      reader.setDaemon(true);
      reader.start();
    }

    CompletableFuture<ExpertReply> call(String entityId, ComputeExperts request, Duration timeout) {
      long id = ids.incrementAndGet();
      CompletableFuture<ExpertReply> reply = new CompletableFuture<>();
      pending.put(id, new Pending(entityId, reply));
      Runnable cancelTimeout = timers.after(timeout, () -> reply.completeExceptionally(new TimeoutException(
          "no answer from " + endpoint + " in " + timeout.toMillis() + " ms")));
      reply.whenComplete((r, e) -> { // also when the caller gives up on it
        pending.remove(id);
        cancelTimeout.run();
      });
      ExpertCall call = ExpertCall.newBuilder().setCallId(id).setEntityId(entityId).setCompute(request).build();
      try {
        synchronized (out) {
          DataFrames.write(out, call);
          unflushed = true;
        }
      } catch (IOException e) {
        fail(new IOException("data channel to " + endpoint + " failed: " + e.getMessage(), e));
      }
      IOException f = failure;
      if (f != null) {
        reply.completeExceptionally(f); // failed before (or while) it was written
      }
      return reply;
    }

    boolean hint(String entityId) {
      try {
        synchronized (out) {
          DataFrames.write(out, ExpertCall.newBuilder().setEntityId(entityId).setPrefetch(true).build());
          unflushed = true;
        }
        return true;
      } catch (IOException e) {
        fail(new IOException("data channel to " + endpoint + " failed: " + e.getMessage(), e));
        return false;
      }
    }

    void flush() {
      try {
        synchronized (out) {
          if (!unflushed) {
            return;
          }
          unflushed = false;
          out.flush();
        }
      } catch (IOException e) {
        fail(new IOException("data channel to " + endpoint + " failed: " + e.getMessage(), e));
      }
    }

    private void readLoop() {
      try {
        for (ExpertCallReply r; (r = DataFrames.read(in, ExpertCallReply.parser())) != null; ) {
          // Removed before completing: whoever the reply wakes sees the call gone (inFlight()).
          Pending p = pending.remove(r.getCallId());
          if (p == null) {
            continue; // the caller gave up on it (timeout, or a hedge won)
          }
          if (r.getNotHosted()) {
            p.reply().completeExceptionally(new NotHostedException(p.entityId(), endpoint));
          } else {
            p.reply().complete(r.getReply());
          }
        }
        fail(new IOException("the expert node closed the data channel " + endpoint));
      } catch (IOException e) {
        fail(new IOException("data channel to " + endpoint + " lost: " + e.getMessage(), e));
      }
    }

    void fail(IOException why) {
      if (failure == null) {
        failure = why;
      }
      try {
        socket.close();
      } catch (IOException ignored) {
        // failed anyway
      }
      for (Long id : pending.keySet()) {
        Pending p = pending.remove(id);
        if (p != null) {
          p.reply().completeExceptionally(failure);
        }
      }
    }
  }
}
