package io.moecluster.deploy.commands;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.checkpoint.CheckpointSpec;
import io.moecluster.core.checkpoint.CheckpointWriter;
import io.moecluster.core.checkpoint.Preset;
import io.moecluster.core.tensor.DType;
import io.moecluster.deploy.MoeRun;
import io.moecluster.deploy.cluster.ClusterNode;
import io.moecluster.deploy.cluster.NodeSpec;
import io.moecluster.deploy.cluster.Role;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * The commands against a one-node cluster whose gateway requires mutual TLS and an API key, as
 * {@code moe serve --tls-cert ... --tls-key ... --tls-client-ca ... --api-keys-file ...} sets it
 * up, with certificates from {@code moe certs}: {@code moe client} and {@code moe bench} get
 * through with the flags and are refused cleanly without them; bad files stop {@code moe serve}
 * with exit 2 and one line.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@Timeout(value = 3, unit = TimeUnit.MINUTES)
class SecureGatewayCommandsTest {
  private static final String KEY = "team-a-7c1e29";

  @TempDir static Path dir;
  private Path certs;
  private Path model;
  private ClusterNode node;
  private String target;


  private static MoeRun run(String... args) {
    return MoeRun.of(args);
  }

  @BeforeAll
  void startNode() throws Exception {
    certs = dir.resolve("certs");
    MoeRun made = run("certs", "--out", certs.toString());
    assertEquals(0, made.exitCode(), made.err());
    assertTrue(made.out().contains("server.pem"), made.out());
    Path keys = dir.resolve("api-keys");
    Files.writeString(keys, "# gateway keys\n" + KEY + "\n");
    model = dir.resolve("tiny");
    CheckpointWriter.write(CheckpointSpec.of(Preset.TINY, DType.F32, 1), model);

    // The flags of moe serve, turned into settings as ServeCommand does.
    ServeCommand serve = new ServeCommand();
    new CommandLine(serve).parseArgs("--model", model.toString(), "--tls-cert", certs.resolve("server.pem").toString(),
        "--tls-key", certs.resolve("server-key.pem").toString(), "--tls-client-ca", certs.resolve("ca.pem").toString(),
        "--api-keys-file", keys.toString());
    Map<String, String> conf = new LinkedHashMap<>(Map.of("moe.expert.compute-threads", "1",
        "moe.router.compute-threads", "1", "moe.gateway.api-keys-env", "\"\""));
    serve.security.addTo(conf);
    assertEquals(4, conf.size() - 3, "one setting per flag: " + conf);
    node = ClusterNode.start(new NodeSpec(EnumSet.allOf(Role.class), "127.0.0.1", 0, List.of(), model, "127.0.0.1", 0,
        conf, -1));
    target = "127.0.0.1:" + node.grpcAddress().orElseThrow().port();
    Instant deadline = Instant.now().plus(Duration.ofSeconds(90));
    while (!node.gatewayServing()) {
      assertTrue(Instant.now().isBefore(deadline), "the gateway did not come up");
      Thread.sleep(100);
    }
  }

  @AfterAll
  void stopNode() {
    if (node != null) {
      node.shutdown();
    }
  }

  private String[] secure(String... args) {
    List<String> all = new java.util.ArrayList<>(List.of(args));
    all.addAll(List.of("--target", target, "--ca", certs.resolve("ca.pem").toString(),
        "--client-cert", certs.resolve("client.pem").toString(),
        "--client-key", certs.resolve("client-key.pem").toString()));
    return all.toArray(String[]::new);
  }

  private String[] withKey(String... args) {
    List<String> all = new java.util.ArrayList<>(List.of(secure(args)));
    all.addAll(List.of("--api-key", KEY));
    return all.toArray(String[]::new);
  }

  @Test
  void clientAndBenchGetThroughWithTheFlags() {
    MoeRun info = run(withKey("client", "info"));
    assertEquals(0, info.exitCode(), info.err());
    assertTrue(info.out().startsWith("model tiny (mixtral)"), info.out());

    MoeRun generate = run(withKey("client", "generate", "--prompt", "Once upon a time", "--max-tokens", "4",
        "--temperature", "0", "--ignore-eos"));
    assertEquals(0, generate.exitCode(), generate.err());
    assertTrue(generate.err().contains("generated 4 tokens"), generate.err());

    MoeRun bench = run(withKey("bench", "--concurrency", "2", "--requests", "2", "--warmup", "0", "--prompt-tokens", "4",
        "--max-tokens", "2", "--timeout", "60"));
    assertEquals(0, bench.exitCode(), bench.out() + bench.err());
  }

  @Test
  void withoutTheKeyOrTheCertificateTheCallIsRefusedCleanly() {
    MoeRun wrongKey = run(secure("client", "info", "--api-key", "not-the-key"));
    assertEquals(1, wrongKey.exitCode());
    assertEquals("moe: UNAUTHENTICATED: the API key is not valid\n", wrongKey.err());

    MoeRun noClientCert = run("client", "info", "--target", target, "--ca", certs.resolve("ca.pem").toString(),
        "--api-key", KEY);
    assertEquals(1, noClientCert.exitCode());
    assertTrue(noClientCert.err().startsWith("moe: UNAVAILABLE: "), noClientCert.err());

    MoeRun plaintext = run("client", "info", "--target", target, "--api-key", KEY);
    assertEquals(1, plaintext.exitCode());
    assertTrue(plaintext.err().startsWith("moe: UNAVAILABLE: "), plaintext.err());
    assertFalse(plaintext.err().contains("\tat "), "no stack trace: " + plaintext.err());
    assertTrue(node.gatewayServing(), "the gateway goes on");
  }

  @Test
  void badFilesAreUsageErrorsNamingTheFlagOrKey() throws Exception {
    MoeRun missing = run("serve", "--model", model.toString(), "--grpc-port", "0", "--metrics-port", "-1",
        "--tls-cert", dir.resolve("nope.pem").toString(), "--tls-key", certs.resolve("server-key.pem").toString());
    assertEquals(2, missing.exitCode(), missing.err());
    assertEquals("moe: moe.gateway.tls.cert-chain: cannot read " + dir.resolve("nope.pem").toAbsolutePath()
        + " (no such file)\n", missing.err());

    MoeRun mismatched = run("serve", "--model", model.toString(), "--grpc-port", "0", "--metrics-port", "-1",
        "--tls-cert", certs.resolve("server.pem").toString(), "--tls-key", certs.resolve("client-key.pem").toString());
    assertEquals(2, mismatched.exitCode(), mismatched.err());
    assertTrue(mismatched.err().contains("is not the key of the first certificate"), mismatched.err());

    MoeRun halfPair = run("client", "info", "--target", target, "--client-cert", certs.resolve("client.pem").toString());
    assertEquals(2, halfPair.exitCode());
    assertTrue(halfPair.err().contains("--client-cert and --client-key go together"), halfPair.err());

    MoeRun badCa = run("client", "info", "--target", target, "--ca", certs.resolve("client-key.pem").toString());
    assertEquals(2, badCa.exitCode());
    assertTrue(badCa.err().contains("--ca: ") && badCa.err().contains("holds no PEM certificate"), badCa.err());

    MoeRun again = run("certs", "--out", certs.toString());
    assertEquals(2, again.exitCode());
    assertTrue(again.err().contains("exists; pass --force to overwrite"), again.err());
  }
}
