package io.moecluster.deploy.commands;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.typesafe.config.Config;
import com.typesafe.config.ConfigFactory;
import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.generate.GenerationRequest;
import io.moecluster.core.generate.GenerationResult;
import io.moecluster.core.generate.LocalGenerator;
import io.moecluster.core.sampling.SamplingParams;
import io.moecluster.core.tensor.DType;
import io.moecluster.deploy.Moe;
import io.moecluster.expert.ExpertNode;
import io.moecluster.expert.ExpertNodeSettings;
import io.moecluster.gateway.GatewayServer;
import io.moecluster.gateway.GatewaySettings;
import io.moecluster.router.RouterNode;
import io.moecluster.router.RouterSettings;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.pekko.actor.typed.ActorSystem;
import org.apache.pekko.actor.typed.javadsl.Behaviors;
import org.apache.pekko.cluster.MemberStatus;
import org.apache.pekko.cluster.typed.Cluster;
import org.apache.pekko.cluster.typed.Join;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Gateway loss seen by {@code moe client generate}: two gateways on one cluster node (experts and
 * a router too), every message serialized; the first gateway is shut down while the client
 * streams from it. The client reconnects to the second and resumes after the tokens it printed:
 * its output is exactly the uninterrupted completion, no gap, no duplicate.
 */
@Timeout(value = 120, unit = TimeUnit.SECONDS)
class ClientResumeTest {
  private static final int MAX_TOKENS = 200;

  @TempDir static Path dir;
  private static Path model;
  private static ActorSystem<Void> system;
  private static ExpertNode expertNode;
  private static RouterNode routerNode;
  private static GatewayServer first;
  private static GatewayServer second;

  @BeforeAll
  static void startCluster() {
    model = dir.resolve("tiny-client");
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 2), model);
    Config config =
        ConfigFactory.parseString(
                """
                moe.expert.model-dir = "%1$s"
                moe.expert.compute-threads = 1
                moe.router.model-dir = "%1$s"
                moe.router.compute-threads = 1
                moe.router.min-expert-nodes = 1
                moe.router.placement-retry-interval = 300ms
                moe.gateway.grpc-port = 0
                moe.gateway.health-poll-interval = 100ms
                pekko.loglevel = WARNING
                pekko.actor.provider = cluster
                pekko.actor.serialize-messages = on
                pekko.remote.artery.canonical.hostname = 127.0.0.1
                pekko.remote.artery.canonical.port = 0
                pekko.cluster.roles = [expert, router, gateway]
                pekko.cluster.jmx.multi-mbeans-in-same-jvm = on
                pekko.cluster.sharding.retry-interval = 200ms
                pekko.coordinated-shutdown.run-by-jvm-shutdown-hook = off
                """
                    .formatted(model.toString().replace("\\", "/")))
            .withFallback(ConfigFactory.load());
    system = ActorSystem.create(Behaviors.empty(), "moe", config);
    Cluster cluster = Cluster.get(system);
    cluster.manager().tell(Join.create(cluster.selfMember().address()));
    await("the node Up", Duration.ofSeconds(20), () -> cluster.selfMember().status() == MemberStatus.up());
    expertNode = ExpertNode.start(system, ExpertNodeSettings.fromConfig(system.settings().config()));
    routerNode = RouterNode.start(system, RouterSettings.fromConfig(system.settings().config()));
    GatewaySettings settings = GatewaySettings.fromConfig(system.settings().config());
    first = GatewayServer.start(system, settings, model);
    second = GatewayServer.start(system, settings, model);
    await("both gateways SERVING", Duration.ofSeconds(60), () -> first.isServing() && second.isServing());
  }

  @AfterAll
  static void stopCluster() throws Exception {
    for (GatewayServer g : new GatewayServer[] {first, second}) {
      if (g != null) {
        g.shutdownGracefully(Duration.ZERO);
      }
    }
    if (routerNode != null) {
      routerNode.close();
    }
    if (expertNode != null) {
      expertNode.close();
    }
    if (system != null) {
      system.terminate();
      system.getWhenTerminated().toCompletableFuture().get(20, TimeUnit.SECONDS);
    }
  }

  @Test
  void clientResumesOnTheNextGatewayWithoutGapOrDuplicate() throws Exception {
    String prompt = "The gateway went away while";
    GenerationResult expected;
    try (LocalGenerator local = LocalGenerator.open(model, 1)) {
      expected = local.generate(new GenerationRequest(local.tokenizer().encode(prompt, true),
          new SamplingParams(0.9f, 0, 0.95f, 0f, 1f, 3), MAX_TOKENS, List.of(), true), e -> {});
    }
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    var cli = Moe.commandLine();
    cli.setOut(new PrintWriter(out, true));
    cli.setErr(new PrintWriter(err, true));
    CompletableFuture<Integer> exit = CompletableFuture.supplyAsync(() -> cli.execute(
        "client", "generate", "--target", "127.0.0.1:" + first.port(), "--target", "127.0.0.1:" + second.port(),
        "--prompt", prompt, "--max-tokens", String.valueOf(MAX_TOKENS), "--temperature", "0.9", "--seed", "3",
        "--ignore-eos"));
    await("the first text", Duration.ofSeconds(30), () -> out.getBuffer().length() > 0 || exit.isDone());
    assertTrue(first.runningStreams() == 1, "the stream must still run on the first gateway when it goes");
    first.shutdownGracefully(Duration.ZERO); // cancels the running stream
    int code = exit.get(60, TimeUnit.SECONDS);
    assertEquals(0, code, err.toString());
    assertTrue(err.toString().contains("resuming after"), err.toString());
    assertTrue(err.toString().contains("on 127.0.0.1:" + second.port()), err.toString());
    assertEquals(expected.text() + System.lineSeparator(), out.toString(), "printed once, in order");
  }

  @Test
  void aGatewayDownAtTheStartIsSkipped() throws Exception {
    String prompt = "Skip the dead one";
    GenerationResult expected;
    try (LocalGenerator local = LocalGenerator.open(model, 1)) {
      expected = local.generate(new GenerationRequest(local.tokenizer().encode(prompt, true),
          new SamplingParams(0.8f, 0, 0.95f, 0f, 1f, 5), 8, List.of(), true), e -> {});
    }
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    var cli = Moe.commandLine();
    cli.setOut(new PrintWriter(out, true));
    cli.setErr(new PrintWriter(err, true));
    // Port 1: nobody listens there, so the first target is UNAVAILABLE from the start.
    int code = cli.execute("client", "generate", "--target", "127.0.0.1:1", "--target", "127.0.0.1:" + second.port(),
        "--prompt", prompt, "--max-tokens", "8", "--seed", "5", "--ignore-eos", "--json");
    assertEquals(0, code, err.toString());
    var json = new ObjectMapper().readTree(out.toString());
    List<Integer> ids = new ArrayList<>();
    json.get("generated_ids").forEach(n -> ids.add(n.asInt()));
    assertEquals(Arrays.stream(expected.generatedIds()).boxed().toList(), ids);
    assertEquals(expected.promptIds().length, json.get("prompt_ids").size());
    assertTrue(err.toString().contains("127.0.0.1:1: UNAVAILABLE"), err.toString());
  }

  @Test
  void noReconnectsFailsWithTheGatewaysStatus() {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    var cli = Moe.commandLine();
    cli.setOut(new PrintWriter(out, true));
    cli.setErr(new PrintWriter(err, true));
    // A port nobody listens on: UNAVAILABLE, and no other gateway to try.
    int code = cli.execute("client", "generate", "--target", "127.0.0.1:1", "--reconnects", "0", "--prompt", "Hi",
        "--max-tokens", "2");
    assertEquals(1, code, err.toString());
    assertTrue(err.toString().startsWith("moe: UNAVAILABLE"), err.toString());
  }

  private static void await(String what, Duration timeout, BooleanSupplier condition) {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("timed out waiting for " + what);
      }
      try {
        Thread.sleep(10);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new AssertionError(e);
      }
    }
  }
}
