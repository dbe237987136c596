package io.moecluster.deploy.chaos;

import io.grpc.ManagedChannel;
import io.moecluster.core.config.ModelConfig;
import io.moecluster.core.generate.GenerationResult;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.deploy.cluster.Gateways;
import io.moecluster.proto.v1.GetModelInfoRequest;
import io.moecluster.proto.v1.InferenceGrpc;
import io.moecluster.proto.v1.ModelInfo;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * One scenario end to end: start the topology's JVMs, wait until ready, run the seeded load while
 * the injector applies the fault, stop the cluster, replay every request in this process with the
 * single-process {@link LocalGenerator} (the reference: by batch invariance and the seeded
 * sampler, the cluster must stream exactly its tokens), and analyse the streams into a {@link
 * ChaosReport}.
 */
public final class ChaosRun {
  /**
   * @param faultAt the fault's earliest offset from the start of the load
   * @param faultAfterTokens the fault waits until every stream has this many tokens of its request
   * @param pause how long pause-expert keeps the node stopped
   * @param conf {@code --conf} settings for every node, over the chaos defaults
   * @param referenceThreads kernel threads of the in-process reference
   */
  public record Settings(Path model, Scenario scenario, int expertNodes, int replicas, SeededLoad.Settings load,
      Duration faultAt, int faultAfterTokens, Duration pause, int portBase, Duration startTimeout,
      Map<String, String> conf, int referenceThreads) {
    public Settings {
      conf = Map.copyOf(conf);
      if (replicas < 1 || replicas > 2) {
        throw new IllegalArgumentException("--replicas must be 1 or 2, got " + replicas);
      }
      if (faultAfterTokens < 1 || faultAfterTokens >= load.maxTokens()) {
        throw new IllegalArgumentException("--fault-after-tokens must be in [1, --max-tokens - 1], got " + faultAfterTokens);
      }
      if (pause.isZero() || pause.isNegative()) {
        throw new IllegalArgumentException("--pause must be > 0, got " + pause);
      }
      // Checked here too, so a bad value fails before any cluster starts.
      new ChaosCluster.Options(model, Map.of(), portBase, startTimeout, Duration.ofSeconds(1));
    }

    /** The config key of the expert replicas. */
    public static final String REPLICAS_KEY = "moe.expert.replicas";

    /** Every node's settings: one compute thread (the JVMs share the cores), replicas, then --conf. */
    Map<String, String> nodeConf() {
      Map<String, String> c = new LinkedHashMap<>();
      c.put("moe.expert.compute-threads", "1");
      c.put("moe.router.compute-threads", "1");
      c.put("moe.gateway.drain-timeout", "2s");
      c.put(REPLICAS_KEY, Integer.toString(replicas));
      c.putAll(conf);
      return c;
    }

    List<Fault> schedule(Topology topology) {
      Fault.Kind kind = scenario.fault();
      return List.of(new Fault(kind, topology.victim(), faultAt, kind == Fault.Kind.PAUSE ? pause : Duration.ZERO));
    }
  }

  /** Warm-up rounds at most, until one passes without error with every router used. */
  private static final int MAX_WARM_UP_ROUNDS = 5;

  private ChaosRun() {}

  /** Runs {@code settings}' scenario; node output goes to {@code nodeLog}, progress to {@code err}. */
  public static ChaosReport run(Settings settings, PrintStream nodeLog, PrintWriter err) throws Exception {
    Topology topology = Topology.of(settings.scenario().target(), settings.expertNodes());
    List<Fault> schedule = settings.schedule(topology);
    List<String> notes = new ArrayList<>();
    List<StreamRecord> records;
    List<FaultInjector.Injected> injected;
    long loadNanos;
    err.printf("moe chaos: %s: starting %s%n", settings.scenario().cliName(), topology.describe());
    err.flush();
    ChaosCluster.Options options = new ChaosCluster.Options(settings.model(), settings.nodeConf(),
        settings.portBase(), settings.startTimeout(), Duration.ofSeconds(3));
    try (ChaosCluster cluster = ChaosCluster.start(topology, options, nodeLog)) {
      cluster.awaitServing();
      ManagedChannel channel = Gateways.channel(cluster.gateway());
      try {
        checkReplicas(channel, settings.replicas(), notes);
        SeededLoad load = new SeededLoad(settings.load());
        warmUp(cluster, channel, load, settings, notes);
        FaultInjector injector = new FaultInjector(cluster, schedule, settings.faultAfterTokens(),
            settings.startTimeout(), err);
        err.printf("moe chaos: %s: load of %d streams; fault: %s%n", settings.scenario().cliName(),
            settings.load().streams(), schedule.get(0).describe());
        err.flush();
        records = load.run(channel, () -> injector.start(load::now, settings.load().streams(), load::currentTokens));
        loadNanos = load.now();
        // A restart may still wait for the node to rejoin; a fault that never fired is cancelled.
        injected = injector.finish(settings.scenario().fault() == Fault.Kind.RESTART ? settings.startTimeout()
            : Duration.ofSeconds(1));
        Set<String> victims = new java.util.HashSet<>();
        injected.forEach(i -> victims.add(i.fault().node()));
        cluster.deadNode(victims).ifPresent(m -> notes.add("a node the scenario did not target died: " + m));
      } finally {
        Gateways.close(channel);
      }
    }
    err.printf("moe chaos: %s: replaying %d requests in this process for the reference%n",
        settings.scenario().cliName(), records.size());
    err.flush();
    return report(settings, topology, schedule.size(), records, injected, loadNanos, reference(settings, records), notes);
  }

  /**
   * Warm-up rounds until every router has routed tokens (the gateway only sends to a router once
   * it has located the experts, so this also says every router is ready), at most until the start
   * timeout. Warm-up failures go into the notes: they happened before any fault.
   */
  private static void warmUp(ChaosCluster cluster, ManagedChannel channel, SeededLoad load, Settings settings,
      List<String> notes) throws InterruptedException {
    long deadline = System.nanoTime() + settings.startTimeout().toNanos();
    List<String> failedRounds = new ArrayList<>();
    int rounds = 0;
    while (true) {
      List<String> errors = load.warmUp(channel);
      rounds++;
      if (!errors.isEmpty()) {
        failedRounds.add("round " + rounds + ": " + errors.size() + " failed, first: " + errors.get(0));
      }
      if ((errors.isEmpty() && cluster.idleRouters().isEmpty()) || rounds == MAX_WARM_UP_ROUNDS
          || System.nanoTime() > deadline) {
        break;
      }
      Thread.sleep(1000);
    }
    if (!failedRounds.isEmpty()) {
      notes.add("warm-up requests failed before any fault (" + String.join("; ", failedRounds) + ")");
    }
    List<String> idle = cluster.idleRouters();
    if (!idle.isEmpty()) {
      notes.add("after " + rounds + " warm-up round(s), " + idle + " had routed no token: the fault may hit a router "
          + "without streams");
    }
  }

  /** The reference tokens of every request, from the single-process generator. */
  static List<int[]> reference(Settings settings, List<StreamRecord> records) {
    List<int[]> out = new ArrayList<>();
    try (LocalGenerator generator = LocalGenerator.open(settings.model(), settings.referenceThreads())) {
      for (StreamRecord r : records) {
        GenerationResult result = generator.generate(r.request(), e -> {});
        out.add(result.generatedIds());
      }
    }
    return out;
  }

  /** Compares the records with their references and analyses each fault. */
  static ChaosReport report(Settings settings, Topology topology, int scheduled, List<StreamRecord> records,
      List<FaultInjector.Injected> injected, long loadNanos, List<int[]> references, List<String> notes) {
    int completed = 0;
    int failed = 0;
    int identical = 0;
    int mismatched = 0;
    List<String> problems = new ArrayList<>();
    for (int i = 0; i < records.size(); i++) {
      StreamRecord r = records.get(i);
      if (r.failed()) {
        failed++;
        addProblem(problems, String.format(java.util.Locale.ROOT, "%s failed at %.2f s after %d tokens: %s",
            r.label(), r.endNanos() / 1e9, r.tokenIds().length, r.error()));
        continue;
      }
      completed++;
      String diff = r.difference(references.get(i));
      if (diff == null) {
        identical++;
      } else {
        mismatched++;
        addProblem(problems, r.label() + " differs from the reference: " + diff);
      }
    }
    if (failed + mismatched > 5) {
      problems.add("... " + (failed + mismatched - 5) + " more");
    }
    if (injected.size() < scheduled) {
      notes.add("the load ended before every fault was injected; a longer --duration or a larger --max-tokens helps");
    }
    long first = injected.isEmpty() ? Long.MAX_VALUE : injected.get(0).injectedNanos();
    List<ChaosReport.FaultReport> faults = new ArrayList<>();
    for (FaultInjector.Injected in : injected) {
      faults.add(new ChaosReport.FaultReport(in.fault(), in, StallAnalysis.of(records, in.injectedNanos(), first)));
    }
    SeededLoad.Settings load = settings.load();
    return new ChaosReport(settings.scenario(), topology.describe(), settings.replicas(), load.streams(),
        load.maxTokens(), load.seed(), loadNanos / 1e9, records.size(), completed, failed, identical, mismatched,
        faults, scheduled, problems, notes);
  }

  private static void addProblem(List<String> problems, String line) {
    if (problems.size() < 5) {
      problems.add(line);
    }
  }

  /** With replicas = 2, says so in the notes when the placement shows no second replica. */
  private static void checkReplicas(ManagedChannel channel, int replicas, List<String> notes) {
    if (replicas < 2) {
      return;
    }
    ModelInfo info = InferenceGrpc.newBlockingStub(channel).withDeadlineAfter(10, TimeUnit.SECONDS)
        .getModelInfo(GetModelInfoRequest.getDefaultInstance());
    // Replicas show as a second entry per (layer, expert), or as replica numbers above 0.
    long distinct = info.getPlacementList().stream().map(p -> p.getLayer() + "/" + p.getExpert()).distinct().count();
    if (info.getPlacementCount() <= distinct && info.getPlacementList().stream().noneMatch(p -> p.getReplica() > 0)) {
      notes.add("--replicas 2 was asked for, but the placement shows one replica per expert ("
          + Settings.REPLICAS_KEY + " is not honored by this build)");
    }
  }

  /** The model's vocabulary size, for the random prompts. */
  public static int vocabSize(Path model) {
    return ModelConfig.load(model).vocabSize();
  }
}
