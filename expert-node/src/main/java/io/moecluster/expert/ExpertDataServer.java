package io.moecluster.expert;

import io.moecluster.proto.cluster.v1.ExpertCall;
import io.moecluster.proto.cluster.v1.ExpertCallReply;
import io.moecluster.proto.codec.DataFrames;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.net.SocketTimeoutException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import jdk.net.ExtendedSocketOptions;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The node's expert data channel ({@code moe.expert.data-channel}): a TCP server that takes
 * {@code ExpertCall}s from routers and runs them on the {@link ExpertComputation} of the entity
 * they name, if that entity lives here ({@link EntityDirectory}).
 *
 * <p>Why it exists: through Artery on a busy machine a request and its reply cost 1-2 ms each way
 * (stream stages, the TCP actor and the dispatchers are several thread hand-offs at each end),
 * against tens of microseconds for a plain socket, and a decode step pays that once per layer.
 * Placement, membership and failover stay on Pekko; only the activations of
 * {@code ComputeExperts} and prefetch hints travel here (a hint costs a few bytes in the write
 * that carries the layer's calls, where through Artery it cost as much CPU as a request). A call
 * for an entity that is not here is answered {@code not_hosted}; the router then goes through
 * Cluster Sharding. A hint is never answered.
 *
 * <p>Threads: one accepts; one per connection reads calls. A router sends all its calls of a layer
 * to a node in one write: the reader reads all that have arrived, then computes those whose
 * weights are ready together ({@link ExpertComputation#computeAll}), in one pass of the node's
 * kernels over all their threads, and writes the replies under the connection's lock. One pass
 * instead of one call per thread: no hand-off between threads on the path of a decode step, and
 * on a node with cores of its own the whole layer's products spread over all of them, where
 * separate calls kept each product on one core (docs/PERFORMANCE.md, "A node's calls of a layer
 * in one pass"). A miss that waits for its weights is answered from the compute executor once
 * they are loaded. A peer that does not greet in time is disconnected, and TCP keepalive frees
 * the reader of a router host that vanished without closing its connection.
 */
final class ExpertDataServer implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ExpertDataServer.class);
  private static final AtomicInteger IDS = new AtomicInteger();
  // A router greets as soon as it connects, and gives up on a node that has not greeted back within
  // 2 s: a peer silent for longer is not a router (a port scan, a stuck client) and would hold a
  // reader thread and a socket for ever.
  static final Duration GREETING_TIMEOUT = Duration.ofSeconds(10);
  // Keepalive probes after this long idle, then every KEEPALIVE_INTERVAL, KEEPALIVE_PROBES of
  // them: a router host that vanished without a FIN or RST (power loss, a partition) frees its
  // reader thread and socket after about 2 minutes instead of the OS default's 2 hours and more.
  // A connection is legitimately idle for as long as its router sends nothing, so no read timeout.
  private static final int KEEPALIVE_IDLE_SECONDS = 60;
  private static final int KEEPALIVE_INTERVAL_SECONDS = 10;
  private static final int KEEPALIVE_PROBES = 6;

  private final ServerSocket server;
  private final EntityDirectory directory;
  private final String endpoint;
  private final int greetingTimeoutMillis;
  private final Set<Socket> connections = ConcurrentHashMap.newKeySet();
  private volatile boolean closed;

  private ExpertDataServer(ServerSocket server, EntityDirectory directory, String endpoint,
      Duration greetingTimeout) {
    this.server = server;
    this.directory = directory;
    this.endpoint = endpoint;
    this.greetingTimeoutMillis = (int) Math.max(1, greetingTimeout.toMillis());
  }

  /**
   * Binds {@code bindHost:port} (0: a free port) and starts accepting.
   *
   * @param advertisedHost the host routers connect to (the node's canonical cluster host)
   * @throws IllegalStateException when the port cannot be bound, with the address and the reason
   */
  static ExpertDataServer start(String bindHost, int port, String advertisedHost, EntityDirectory directory,
      String node) {
    return start(bindHost, port, advertisedHost, directory, node, GREETING_TIMEOUT);
  }

  /** @param greetingTimeout how long a connected peer may take to greet before it is disconnected */
  static ExpertDataServer start(String bindHost, int port, String advertisedHost, EntityDirectory directory,
      String node, Duration greetingTimeout) {
    ServerSocket server;
    try {
      server = new ServerSocket();
      server.setReuseAddress(true);
      server.bind(new InetSocketAddress(InetAddress.getByName(bindHost), port), 64);
    } catch (IOException e) {
      throw new IllegalStateException("cannot bind the expert data channel to " + bindHost + ":" + port
          + " (moe.expert.data-channel.port): " + e.getMessage(), e);
    }
    String endpoint = advertisedHost + ":" + server.getLocalPort();
    ExpertDataServer s = new ExpertDataServer(server, directory, endpoint, greetingTimeout);
    Thread accept = new Thread(s::acceptLoop, "moe-data-channel-accept-" + IDS.incrementAndGet());
    accept.setDaemon(true);
    accept.start();
    log.info("Expert data channel of {} listening on {}", node, endpoint);
    return s;
  }

  /** "host:port" that routers connect to (Located.data_endpoint). */
  String endpoint() {
    return endpoint;
  }

  private void acceptLoop() {
    while (!closed) {
      Socket socket;
      try {
        socket = server.accept();
      } catch (IOException e) {
        if (!closed) {
          log.warn("Expert data channel {}: accept failed: {}", endpoint, e.getMessage());
          sleepQuietly(); // e.g. out of file descriptors: do not spin
        }
        continue;
      }
      connections.add(socket);
      Thread reader = new Thread(() -> serve(socket), "moe-data-channel-" + socket.getRemoteSocketAddress());
      reader.setDaemon(true);
      reader.start();
    }
  }

  private void serve(Socket socket) {
    List<ExpertComputation.Ready> ready = new ArrayList<>(); // read, not yet computed
    try (socket) {
      socket.setTcpNoDelay(true);
      keepAlive(socket);
      DataInputStream in = new DataInputStream(new BufferedInputStream(socket.getInputStream(), 64 << 10));
      OutputStream out = new BufferedOutputStream(socket.getOutputStream(), 64 << 10);
      socket.setSoTimeout(greetingTimeoutMillis);
      try {
        DataFrames.expectGreeting(in);
      } catch (SocketTimeoutException e) {
        log.info("Expert data channel {}: {} sent no greeting in {} ms; disconnected", endpoint,
            socket.getRemoteSocketAddress(), greetingTimeoutMillis);
        return;
      }
      socket.setSoTimeout(0); // between a router's requests the channel is idle for as long as it likes
      synchronized (out) {
        out.write(DataFrames.GREETING);
        out.flush();
      }
      for (ExpertCall call; (call = DataFrames.read(in, ExpertCall.parser())) != null; ) {
        dispatch(call, socket, out, ready);
        // Nothing more has arrived: the router's write of this layer is read whole, and waiting
        // for more would hold its calls until the next layer, which needs their answers first.
        if (in.available() == 0 && !ready.isEmpty()) {
          List<ExpertComputation.Ready> batch = List.copyOf(ready);
          ready.clear();
          ExpertComputation.computeAll(batch);
        }
      }
    } catch (IOException e) {
      if (!closed && !(e instanceof SocketException)) {
        log.warn("Expert data channel {}: connection from {} closed: {}", endpoint, socket.getRemoteSocketAddress(),
            e.getMessage());
      }
    } finally {
      // Calls read but not computed when the connection broke: no reply can reach their router,
      // which sends its calls in flight again elsewhere; their weights must not stay leased.
      ExpertComputation.abandon(ready);
      connections.remove(socket);
    }
  }

  /** Keepalive on, with shorter timings where the platform lets them be set. */
  private static void keepAlive(Socket socket) throws IOException {
    socket.setKeepAlive(true);
    try {
      socket.setOption(ExtendedSocketOptions.TCP_KEEPIDLE, KEEPALIVE_IDLE_SECONDS);
      socket.setOption(ExtendedSocketOptions.TCP_KEEPINTERVAL, KEEPALIVE_INTERVAL_SECONDS);
      socket.setOption(ExtendedSocketOptions.TCP_KEEPCOUNT, KEEPALIVE_PROBES);
    } catch (UnsupportedOperationException e) {
      // the OS defaults apply (hours): a vanished router is still found, later
    }
  }

  private void dispatch(ExpertCall call, Socket socket, OutputStream out, List<ExpertComputation.Ready> ready) {
    long id = call.getCallId();
    ExpertComputation computation = directory.get(call.getEntityId());
    if (call.getPrefetch()) {
      if (computation != null) {
        computation.prefetch(); // only schedules a load: fine on the reader thread
      }
      return;
    }
    if (computation == null) {
      send(socket, out, ExpertCallReply.newBuilder().setCallId(id).setNotHosted(true).build());
      return;
    }
    ExpertComputation.Ready r = computation.prepare(call.getCompute(),
        reply -> send(socket, out, ExpertCallReply.newBuilder().setCallId(id).setReply(reply).build()));
    if (r != null) {
      ready.add(r);
    }
  }

  /**
   * Writes one reply. A write that fails may have left half a frame: the connection is closed,
   * and the router, seeing it drop, sends its calls in flight again.
   */
  private static void send(Socket socket, OutputStream out, ExpertCallReply reply) {
    synchronized (out) {
      try {
        DataFrames.write(out, reply);
        out.flush();
      } catch (IOException e) {
        try {
          socket.close();
        } catch (IOException ignored) {
          // closing anyway
        }
      }
    }
  }

  private static void sleepQuietly() {
    try {
      Thread.sleep(100);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** Stops accepting and closes every connection: the routers' calls in flight fail and are retried. */
  @Override
  public void close() {
    closed = true;
    try {
      server.close();
    } catch (IOException e) {
      // closing anyway
    }
    for (Socket s : connections) {
      try {
        s.close();
      } catch (IOException e) {
        // closing anyway
      }
    }
  }
}
