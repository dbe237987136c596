package io.moecluster.deploy.commands;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.deploy.MoeRun;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Bad flags of the cluster commands: exit 2 and one line that says what to change. */
@Timeout(30)
class CommandValidationTest {
  @TempDir Path tmp;


  private static MoeRun run(String... args) {
    return MoeRun.of(args);
  }

  private Path model() throws IOException {
    Path dir = Files.createDirectories(tmp.resolve("model"));
    Files.writeString(dir.resolve("config.json"), "{}");
    return dir;
  }

  private static void assertUsage(MoeRun r, String expected) {
    assertEquals(2, r.exitCode(), r.err());
    assertTrue(r.err().contains(expected), "stderr: " + r.err());
    assertTrue(r.err().startsWith("moe: "), r.err());
    assertEquals("", r.out());
  }

  @Test
  void badRoles() throws IOException {
    assertUsage(run("node", "--roles", "expert,worker", "--seed-nodes", "127.0.0.1:25520", "--model", model().toString()),
        "unknown role 'worker'");
    assertUsage(run("node", "--roles", "", "--seed-nodes", "127.0.0.1:25520", "--model", model().toString()),
        "--roles");
  }

  @Test
  void badSeedNodes() throws IOException {
    assertUsage(run("node", "--roles", "expert", "--seed-nodes", "127.0.0.1", "--model", model().toString()),
        "--seed-nodes: expected host:port, got '127.0.0.1'");
    assertUsage(run("node", "--roles", "expert", "--seed-nodes", "127.0.0.1:99999", "--model", model().toString()),
        "must be in [1, 65535]");
  }

  @Test
  void missingFlagsAreUsageErrors() {
    MoeRun r = run("node", "--roles", "expert");
    assertEquals(2, r.exitCode());
    assertTrue(r.err().contains("Missing required options"), r.err());
  }

  @Test
  void aModelDirectoryWithoutConfigIsAUsageError() {
    assertUsage(run("node", "--roles", "expert", "--seed-nodes", "127.0.0.1:25520", "--model", tmp.toString()),
        "has no config.json");
    assertUsage(run("serve", "--model", tmp.resolve("nope").toString()), "is not a directory");
    assertUsage(run("local-cluster", "--model", tmp.resolve("nope").toString()), "is not a directory");
  }

  @Test
  void badPorts() throws IOException {
    assertUsage(run("node", "--roles", "gateway", "--seed-nodes", "127.0.0.1:25520", "--model", model().toString(),
        "--grpc-port", "70000"), "--grpc-port must be in [0, 65535]");
    assertUsage(run("local-cluster", "--model", model().toString(), "--expert-nodes", "0"),
        "--expert-nodes must be in [1, 64]");
    // Large enough that the ports computed from it would wrap around.
    assertUsage(run("local-cluster", "--model", model().toString(), "--expert-nodes", "2147483647"),
        "--expert-nodes must be in [1, 64]");
  }

  @Test
  void badBenchFlags() {
    assertUsage(run("bench", "--concurrency", "1,0"), "--concurrency levels must be >= 1");
    assertUsage(run("bench", "--requests", "0"), "--requests");
    assertUsage(run("bench", "--target", "nohost"), "--target: expected host:port");
  }

  @Test
  void clientFlagsAreCheckedBeforeAnyCall() {
    assertUsage(run("client", "generate", "--target", "127.0.0.1:1", "--prompt", "hi", "--top-p", "2"), "--top-p");
    assertUsage(run("client", "generate", "--target", "127.0.0.1:1", "--prompt-ids", "1,2", "--chat"), "--chat");
    assertUsage(run("client", "generate", "--target", "127.0.0.1:1", "--prompt", "hi", "--max-tokens", "0"),
        "--max-tokens");
  }

  @Test
  void anUnreachableGatewayIsAFailureNamingTheStatus() {
    MoeRun r = run("client", "info", "--target", "127.0.0.1:1");
    assertEquals(1, r.exitCode(), r.err());
    assertTrue(r.err().startsWith("moe: UNAVAILABLE: "), r.err());
  }

  @Test
  void aKeyIsWarnedAboutOnlyWhereItLeavesTheHost() {
    for (String host : new String[] {"localhost", "127.0.0.1", "127.3.4.5", "::1", "[::1]"}) {
      assertTrue(ClientSecurityOptions.loopback(host), host);
    }
    for (String host : new String[] {"10.0.0.1", "gateway.internal", "128.0.0.1", "::2"}) {
      assertTrue(!ClientSecurityOptions.loopback(host), host);
    }
  }
}
