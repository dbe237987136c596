package io.moecluster.deploy.cluster;

import io.moecluster.deploy.cli.UserError;
import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import io.prometheus.metrics.instrumentation.jvm.JvmMetrics;
import java.io.IOException;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The {@code /metrics} HTTP endpoint of this JVM: one Prometheus {@link HTTPServer} over the
 * default registry (every role's metrics and the JVM's), shared by every node of the JVM (several
 * only in tests) and stopped when the last of them releases it.
 *
 * <p>Port -1 serves nothing; 0 picks a free port. A node that asks for a port while the JVM
 * already serves on another one shares the running endpoint (a warning says so).
 */
public final class MetricsEndpoint {
  private static final Logger log = LoggerFactory.getLogger(MetricsEndpoint.class);

  /** The config key of the port: 0 any free one, -1 none. */
  public static final String PORT_KEY = "moe.metrics.port";

  /** The config key of the bind address; empty: the node's {@code --host}. */
  public static final String HOST_KEY = "moe.metrics.host";

  private static HTTPServer server;
  private static String serverHost;
  private static int users;
  private static boolean jvmRegistered;

  private MetricsEndpoint() {}

  /** One node's hold on the endpoint; {@link #close()} releases it once. */
  public static final class Lease implements AutoCloseable {
    private final HostPort address;
    private boolean closed;

    private Lease(HostPort address) {
      this.address = address;
    }

    /** Where the endpoint listens (the port as bound). */
    public HostPort address() {
      return address;
    }

    @Override
    public void close() {
      synchronized (MetricsEndpoint.class) {
        if (closed) {
          return;
        }
        closed = true;
        release();
      }
    }
  }

  /**
   * Serves {@code /metrics} on {@code host:port} (or shares the endpoint this JVM already serves);
   * empty for port -1.
   *
   * @throws UserError when the port cannot be bound
   */
  public static synchronized Optional<Lease> acquire(String host, int port) {
    if (port < 0) {
      return Optional.empty();
    }
    registerJvmMetrics();
    if (server != null) {
      if (port != 0 && port != server.getPort()) {
        log.warn("this JVM already serves /metrics on {}:{}; {} {} is not used", serverHost, server.getPort(),
            PORT_KEY, port);
      }
      users++;
      return Optional.of(new Lease(new HostPort(serverHost, server.getPort())));
    }
    try {
      server = HTTPServer.builder().hostname(host).port(port).buildAndStart();
    } catch (IOException | RuntimeException e) {
      throw new UserError("--metrics-port " + port + ": cannot serve /metrics on " + host + ":" + port + " ("
          + e.getMessage() + "); pick another port, 0 for any free one, or -1 for none", e);
    }
    serverHost = host;
    users = 1;
    log.info("serving Prometheus metrics on http://{}:{}/metrics", host, server.getPort());
    return Optional.of(new Lease(new HostPort(host, server.getPort())));
  }

  private static void release() {
    if (--users == 0 && server != null) {
      server.close();
      server = null;
    }
  }

  /** The JVM's own metrics (memory, GC, threads, ...), once per JVM. */
  static synchronized void registerJvmMetrics() {
    if (!jvmRegistered) {
      jvmRegistered = true;
      JvmMetrics.builder().register();
    }
  }
}
