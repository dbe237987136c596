package io.moecluster.deploy.commands;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.moecluster.deploy.chaos.ChaosReport;
import io.moecluster.deploy.chaos.ChaosRun;
import io.moecluster.deploy.chaos.Scenario;
import io.moecluster.deploy.chaos.SeededLoad;
import io.moecluster.deploy.chaos.Topology;
import io.moecluster.deploy.cli.ExitCodes;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * {@code moe chaos}: starts a local multi-JVM cluster per scenario, runs a seeded load through it
 * while it kills, pauses or restarts a node, and checks every stream against the single-process
 * reference. Exit code 0 only when no request failed and every token was identical.
 */
@Command(name = "chaos",
    description = {"Fault injection on a local multi-JVM cluster: run seeded streams, SIGKILL / SIGSTOP / restart a",
        "node mid-generation, and check every stream against the single-process reference. Prints per",
        "scenario: requests ok/failed, tokens identical, stall per fault (p50, max), recovery time.",
        "Exit code 0 only when nothing was lost.",
        "Example: moe chaos --model /tmp/small --scenario kill-expert --replicas 2 --streams 16"})
public final class ChaosCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--model", paramLabel = "DIR", required = true, description = "a Hugging Face checkpoint directory")
  Path model;

  @Option(names = "--scenario", required = true, paramLabel = "NAME",
      description = "kill-expert, kill-router, restart-expert, pause-expert, or all (each on a fresh cluster)")
  String scenario;

  @Option(names = "--streams", description = "concurrent streams of the load (default: ${DEFAULT-VALUE})", defaultValue = "16")
  int streams;

  @Option(names = "--duration", paramLabel = "SECONDS",
      description = "how long each stream keeps sending requests; 0: one request per stream (default: ${DEFAULT-VALUE})",
      defaultValue = "0")
  double durationSeconds;

  @Option(names = "--replicas", description = "replicas of every expert, 1 or 2 (moe.expert.replicas) (default: ${DEFAULT-VALUE})",
      defaultValue = "1")
  int replicas;

  @Option(names = "--seed", description = "seed of the prompts and of the sampled streams (default: ${DEFAULT-VALUE})",
      defaultValue = "0")
  long seed;

  @Option(names = "--max-tokens", description = "tokens generated per request, ignoring EOS (default: ${DEFAULT-VALUE})",
      defaultValue = "48")
  int maxTokens;

  @Option(names = "--expert-nodes", description = "expert JVMs; expert scenarios need >= 3 (default: ${DEFAULT-VALUE})",
      defaultValue = "3")
  int expertNodes;

  @Option(names = "--fault-at", paramLabel = "SECONDS",
      description = "earliest time of the fault after the load starts (default: ${DEFAULT-VALUE})", defaultValue = "0")
  double faultAtSeconds;

  @Option(names = "--fault-after-tokens", paramLabel = "N",
      description = "the fault waits until every stream has streamed N tokens of its request (default: max-tokens / 4)")
  Integer faultAfterTokens;

  @Option(names = "--pause", paramLabel = "SECONDS", description = "how long pause-expert keeps the node stopped (default: ${DEFAULT-VALUE})",
      defaultValue = "3")
  double pauseSeconds;

  @Option(names = "--port-base", paramLabel = "PORT",
      description = "node i gets cluster port PORT+i, metrics PORT+50+i, the gateway gRPC PORT+49; 0 picks free ports (default: ${DEFAULT-VALUE})",
      defaultValue = "0")
  int portBase;

  @Option(names = "--start-timeout", paramLabel = "SECONDS",
      description = "how long the cluster may take to serve, and a restarted node to rejoin (default: ${DEFAULT-VALUE})",
      defaultValue = "180")
  int startTimeoutSeconds;

  @Option(names = "--request-timeout", paramLabel = "SECONDS", description = "deadline of each request (default: ${DEFAULT-VALUE})",
      defaultValue = "120")
  int requestTimeoutSeconds;

  @Option(names = "--json", description = "print the report as JSON (one object, \"scenarios\": [...])")
  boolean json;

  @Option(names = "--log", paramLabel = "FILE", description = "where the nodes' output goes (default: a file in the temp directory)")
  Path log;

  @Option(names = "--conf", paramLabel = "KEY=VALUE", description = "a config setting for every node (HOCON); repeatable")
  Map<String, String> conf = new LinkedHashMap<>();

  @Override
  public Integer call() throws Exception {
    NodeRunner.checkModelDir(model);
    List<Scenario> scenarios = Scenario.parse(scenario);
    if (durationSeconds < 0 || faultAtSeconds < 0 || pauseSeconds <= 0 || startTimeoutSeconds < 1
        || requestTimeoutSeconds < 1) {
      throw new IllegalArgumentException(
          "--duration and --fault-at must be >= 0; --pause, --start-timeout and --request-timeout > 0");
    }
    SeededLoad.Settings load = new SeededLoad.Settings(streams, seconds(durationSeconds), maxTokens, seed,
        ChaosRun.vocabSize(model), Duration.ofSeconds(requestTimeoutSeconds));
    int afterTokens = faultAfterTokens != null ? faultAfterTokens : Math.max(1, maxTokens / 4);
    List<ChaosRun.Settings> runs = new ArrayList<>();
    for (Scenario s : scenarios) {
      Topology.of(s.target(), expertNodes); // a bad --expert-nodes fails now, not after a first scenario ran
      runs.add(new ChaosRun.Settings(model, s, expertNodes, replicas, load, seconds(faultAtSeconds), afterTokens,
          seconds(pauseSeconds), portBase, Duration.ofSeconds(startTimeoutSeconds), conf,
          Runtime.getRuntime().availableProcessors()));
    }
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    Path logFile = log != null ? log : Files.createTempFile("moe-chaos-", ".log");
    err.println("moe chaos: node output goes to " + logFile);
    err.flush();
    List<ChaosReport> reports = new ArrayList<>();
    try (OutputStream file = Files.newOutputStream(logFile);
        PrintStream nodeLog = new PrintStream(file, true, StandardCharsets.UTF_8)) {
      for (ChaosRun.Settings run : runs) {
        ChaosReport report = ChaosRun.run(run, nodeLog, err);
        reports.add(report);
        if (!json) {
          out.print(report.text());
          out.flush();
        }
      }
    } catch (IOException e) {
      throw new IOException("cannot write the node log " + logFile + ": " + e.getMessage(), e);
    }
    boolean ok = reports.stream().allMatch(ChaosReport::ok);
    if (json) {
      ObjectMapper mapper = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
      ObjectNode root = mapper.createObjectNode();
      ArrayNode array = root.putArray("scenarios");
      reports.forEach(r -> array.add(r.json(mapper)));
      root.put("ok", ok);
      out.println(mapper.writeValueAsString(root));
      out.flush();
    } else if (reports.size() > 1) {
      out.println(ok ? "moe chaos: all scenarios OK" : "moe chaos: some scenarios lost requests or tokens");
      out.flush();
    }
    return ok ? ExitCodes.OK : ExitCodes.FAILURE;
  }

  private static Duration seconds(double s) {
    return Duration.ofNanos(Math.round(s * 1e9));
  }
}
