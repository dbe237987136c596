package io.moecluster.deploy.chaos;

import io.grpc.ManagedChannel;
import io.moecluster.deploy.cluster.ChildProcess;
import io.moecluster.deploy.cluster.Gateways;
import io.moecluster.deploy.cluster.HostPort;
import io.moecluster.deploy.cluster.JavaCommand;
import io.moecluster.deploy.stats.PrometheusText;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * The multi-JVM cluster of a chaos run: one child JVM ({@code moe node}) per node of a {@link
 * Topology}, on loopback, each with its cluster, gRPC and metrics ports fixed at start so that a
 * node can be started again with the very same spec after it was killed. Owns the children: it
 * kills, pauses, resumes and restarts them on the injector's behalf, and {@link #close()} (also
 * run by a shutdown hook, for Ctrl-C) leaves none behind.
 */
public final class ChaosCluster implements AutoCloseable {
  private static final String HOST = "127.0.0.1";

  /**
   * @param portBase 0: free ports; otherwise node i gets cluster port portBase + i, metrics port
   *     portBase + 50 + i, and the gateway gRPC port portBase + 49. With free ports, each node
   *     picks its own metrics port at bind time (no race with other processes) and logs it
   * @param conf {@code --conf} settings for every node
   */
  public record Options(Path model, Map<String, String> conf, int portBase, Duration startTimeout,
      Duration stopGrace) {
    public Options {
      conf = Map.copyOf(conf);
      if (portBase != 0 && (portBase < 1024 || portBase > 65535 - 100)) {
        throw new IllegalArgumentException("--port-base must be 0 (free ports) or in [1024, 65435], got " + portBase);
      }
    }
  }

  /** One node: its spec (command line) and its current process. */
  private static final class Node {
    final Topology.Node spec;
    final List<String> command;
    volatile ChildProcess process;
    volatile boolean paused;

    Node(Topology.Node spec, List<String> command) {
      this.spec = spec;
      this.command = command;
    }
  }

  private final Topology topology;
  private final Options options;
  private final HostPort gateway;
  private final Map<String, Node> nodes = new LinkedHashMap<>();
  private final LineWatcher log;
  private final Thread shutdownHook = new Thread(this::close, "chaos-cluster-stop");
  private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(2)).build();
  private volatile boolean closed;

  private ChaosCluster(Topology topology, Options options, HostPort gateway, PrintStream log) {
    this.topology = topology;
    this.options = options;
    this.gateway = gateway;
    this.log = new LineWatcher(log);
  }

  /**
   * Starts every node's JVM (without waiting: see {@link #awaitReady()}); their output goes to
   * {@code log}, each line prefixed with the node's name.
   */
  public static ChaosCluster start(Topology topology, Options options, PrintStream log) {
    int n = topology.nodes().size();
    int base = options.portBase();
    HostPort grpc = new HostPort(HOST, base == 0 ? freePort() : base + 49);
    ChaosCluster cluster = new ChaosCluster(topology, options, grpc, log);
    Runtime.getRuntime().addShutdownHook(cluster.shutdownHook);
    try {
      List<Integer> ports = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        ports.add(base == 0 ? freePort() : base + i);
      }
      String seed = HOST + ":" + ports.get(0);
      for (int i = 0; i < n; i++) {
        Topology.Node spec = topology.nodes().get(i);
        Node node = new Node(spec, cluster.command(spec, ports.get(i), seed, base == 0 ? 0 : base + 50 + i));
        cluster.nodes.put(spec.name(), node);
        node.process = ChildProcess.start(spec.name(), node.command, cluster.log);
      }
    } catch (IOException | RuntimeException e) {
      cluster.close();
      throw e instanceof IOException io ? new UncheckedIOException("cannot start a node JVM", io) : (RuntimeException) e;
    }
    return cluster;
  }

  private List<String> command(Topology.Node spec, int port, String seed, int metricsPort) {
    List<String> cmd = new ArrayList<>(JavaCommand.forMainClass("io.moecluster.deploy.Moe"));
    cmd.addAll(List.of("node", "--roles", spec.roles(), "--host", HOST, "--port", Integer.toString(port),
        "--seed-nodes", seed, "--model", options.model().toAbsolutePath().toString(),
        "--parent-pid", Long.toString(ProcessHandle.current().pid()),
        "--metrics-port", Integer.toString(metricsPort)));
    Map<String, String> conf = new LinkedHashMap<>();
    if (spec.roles().contains("gateway")) {
      cmd.addAll(List.of("--grpc-host", HOST, "--grpc-port", Integer.toString(gateway.port())));
    }
    if (spec.roles().contains("router")) {
      // The router places the experts once every expert JVM is up; fewer, and every expert would
      // land on the first expert JVM to join.
      conf.put("moe.router.min-expert-nodes", Integer.toString(topology.expertNodes()));
    }
    conf.putAll(options.conf());
    conf.forEach((k, v) -> cmd.addAll(List.of("--conf", k + "=" + v)));
    return cmd;
  }

  private static int freePort() {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getByName(HOST))) {
      return s.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot find a free port", e);
    }
  }

  public Topology topology() {
    return topology;
  }

  /** The gateway's gRPC address. */
  public HostPort gateway() {
    return gateway;
  }

  /** The OS process id of a node's current JVM. */
  public long pid(String name) {
    return node(name).process.handle().pid();
  }

  public boolean isAlive(String name) {
    return node(name).process.isAlive();
  }

  private Node node(String name) {
    Node n = nodes.get(name);
    if (n == null) {
      throw new IllegalArgumentException("no node '" + name + "' in " + nodes.keySet());
    }
    return n;
  }

  /** The first node that died without being told to, with its last output lines. */
  public Optional<String> deadNode(Set<String> expectedDead) {
    for (Node n : nodes.values()) {
      if (!expectedDead.contains(n.spec.name()) && !n.process.isAlive()) {
        List<String> tail = n.process.tail();
        return Optional.of(n.spec.name() + " exited with code " + n.process.exitValue() + "; its last lines:\n  "
            + String.join("\n  ", tail.subList(Math.max(0, tail.size() - 10), tail.size())));
      }
    }
    return Optional.empty();
  }

  /** Waits until the gateway is SERVING: some router has located every expert. */
  public void awaitServing() throws InterruptedException {
    ManagedChannel channel = Gateways.channel(gateway);
    try {
      Gateways.awaitServing(channel, options.startTimeout(),
          () -> deadNode(Set.of()).map(m -> new IllegalStateException("a node died before the cluster was serving: " + m)));
    } finally {
      Gateways.close(channel);
    }
  }

  /** The routers (router-role nodes) that have routed no token yet, from their /metrics. */
  public List<String> idleRouters() throws InterruptedException {
    List<String> idle = new ArrayList<>();
    for (Topology.Node n : topology.nodes()) {
      if (n.roles().contains("router")) {
        Optional<PrometheusText> metrics = metrics(n.name());
        if (metrics.isEmpty() || metrics.get().sum("moe_tokens_routed_total") == 0) {
          idle.add(n.name());
        }
      }
    }
    return idle;
  }

  private Optional<PrometheusText> metrics(String name) throws InterruptedException {
    String url = log.metricsUrl(name);
    if (url == null) {
      return Optional.empty();
    }
    try {
      HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(5)).build(),
          HttpResponse.BodyHandlers.ofString());
      return r.statusCode() == 200 ? Optional.of(PrometheusText.parse(r.body())) : Optional.empty();
    } catch (IOException e) {
      return Optional.empty(); // not listening (yet, or any more)
    }
  }

  /** SIGKILL: the JVM dies at once, without leaving the cluster. */
  public void kill(String name) throws InterruptedException {
    Node n = node(name);
    n.process.process().destroyForcibly();
    n.process.process().waitFor(10, TimeUnit.SECONDS);
  }

  /** SIGSTOP: the JVM stops being scheduled; its sockets stay open, so peers see a hang. */
  public void pause(String name) throws IOException, InterruptedException {
    signal(node(name), "STOP");
    node(name).paused = true;
  }

  /** SIGCONT after {@link #pause}. */
  public void resume(String name) throws IOException, InterruptedException {
    signal(node(name), "CONT");
    node(name).paused = false;
  }

  private static void signal(Node n, String signal) throws IOException, InterruptedException {
    Process kill = new ProcessBuilder("kill", "-" + signal, Long.toString(n.process.handle().pid()))
        .redirectErrorStream(true).start();
    String out = new String(kill.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
    if (!kill.waitFor(10, TimeUnit.SECONDS) || kill.exitValue() != 0) {
      throw new IOException("kill -" + signal + " " + n.process.handle().pid() + " failed: " + out);
    }
  }

  /** Starts a killed node again with its original command line (same ports, same roles). */
  public void restart(String name) throws IOException {
    Node n = node(name);
    if (n.process.isAlive()) {
      throw new IllegalStateException(name + " is still running");
    }
    log.forgetMetricsUrl(name);
    n.process = ChildProcess.start(name, n.command, log);
  }

  /**
   * Waits until {@code name} is an Up member again (its own view of the cluster, from its
   * /metrics, has Up members and no unreachable one); returns false on timeout or if it died.
   */
  public boolean awaitJoined(String name, Duration timeout) throws InterruptedException {
    Node n = node(name);
    long deadline = System.nanoTime() + timeout.toNanos();
    while (System.nanoTime() < deadline && n.process.isAlive()) {
      Optional<PrometheusText> text = metrics(name);
      if (text.isPresent() && text.get().sum("moe_cluster_members", x -> "up".equals(x.label("status"))) > 0
          && text.get().sum("moe_cluster_unreachable_members") == 0) {
        return true;
      }
      Thread.sleep(200);
    }
    return false;
  }

  /** Stops every node: paused ones are continued first, then all get SIGTERM and, after the grace, SIGKILL. */
  @Override
  public void close() {
    synchronized (this) {
      if (closed) {
        return;
      }
      closed = true;
    }
    try {
      Runtime.getRuntime().removeShutdownHook(shutdownHook);
    } catch (IllegalStateException e) {
      // Already shutting down: this is the hook.
    }
    for (Node n : nodes.values()) {
      if (n.paused && n.process.isAlive()) {
        try {
          signal(n, "CONT");
        } catch (IOException | InterruptedException e) {
          n.process.process().destroyForcibly();
        }
      }
    }
    // All at once: the run is over, nothing is left to drain in order.
    nodes.values().forEach(n -> n.process.process().destroy());
    nodes.values().forEach(n -> n.process.stop(options.stopGrace()));
  }

  /**
   * The children's log: forwards every line and notes the /metrics URL each node logs when it
   * binds. {@link ChildProcess} writes each line with one {@code println(String)}.
   */
  private static final class LineWatcher extends PrintStream {
    private final PrintStream target;
    /** Each node's /metrics URL, from the line MetricsEndpoint logs when it binds. */
    private final Map<String, String> metricsUrls = new java.util.concurrent.ConcurrentHashMap<>();

    LineWatcher(PrintStream target) {
      super(OutputStream.nullOutputStream(), true, StandardCharsets.UTF_8);
      this.target = target;
    }

    @Override
    public void println(String line) {
      int at = line.indexOf(METRICS_LINE);
      if (line.startsWith("[") && at > 0) {
        metricsUrls.put(line.substring(1, line.indexOf(']')), line.substring(at + METRICS_LINE.length()).trim());
      }
      synchronized (target) {
        target.println(line);
      }
    }

    @Override
    public void flush() {
      target.flush();
    }

    private static final String METRICS_LINE = "serving Prometheus metrics on ";

    String metricsUrl(String node) {
      return metricsUrls.get(node);
    }

    void forgetMetricsUrl(String node) {
      metricsUrls.remove(node);
    }
  }
}
