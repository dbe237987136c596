package io.moecluster.deploy.cluster;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.EnumSet;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class ParsingTest {

  @Test
  void rolesParseCaseInsensitivelyWithSpaces() {
    assertEquals(EnumSet.of(Role.EXPERT, Role.GATEWAY), Role.parseList("Gateway, expert"));
    assertEquals(EnumSet.of(Role.ROUTER), Role.parseList("router,router"));
  }

  @ParameterizedTest
  @ValueSource(strings = {"", "  ", "expert,", "worker", "expert;router"})
  void badRolesSayWhatTheRolesAre(String text) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Role.parseList(text));
    assertTrue(e.getMessage().contains("--roles"), e.getMessage());
  }

  @Test
  void hostPortsParse() {
    assertEquals(new HostPort("10.0.0.1", 25520), HostPort.parse("10.0.0.1:25520", "--seed-nodes"));
    assertEquals(new HostPort("::1", 25520), HostPort.parse("[::1]:25520", "--seed-nodes"));
    assertEquals("[::1]:25520", new HostPort("::1", 25520).toString());
    assertEquals(List.of(new HostPort("a", 1), new HostPort("b", 2)), HostPort.parseList("a:1, b:2", "--seed-nodes"));
  }

  @ParameterizedTest
  @ValueSource(strings = {"", "host", "host:", ":25520", "host:port", "host:0", "host:65536", "::1:25520", "a:1,,b:2"})
  void badHostPortsNameTheFlag(String text) {
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> HostPort.parseList(text, "--seed-nodes"));
    assertTrue(e.getMessage().startsWith("--seed-nodes"), e.getMessage());
  }

  @Test
  void childJvmsGetTheRequiredFlagsAndNoDebugger() {
    List<String> flags = JavaCommand.jvmFlags(List.of(
        "-Xmx2g", "-agentlib:jdwp=transport=dt_socket,server=y,address=5005", "-Dmoe.gateway.max-running=2",
        "--add-modules=jdk.incubator.vector", "-XX:+UseParallelGC", "--add-modules=ALL-DEFAULT",
        "--enable-native-access=ALL-UNNAMED"));
    assertEquals(List.of("-Xmx2g", "-Dmoe.gateway.max-running=2", "--add-modules=jdk.incubator.vector",
        "-XX:+UseParallelGC", "--enable-native-access=ALL-UNNAMED", "--sun-misc-unsafe-memory-access=allow"), flags);
    assertEquals(JavaCommand.REQUIRED_FLAGS, JavaCommand.jvmFlags(List.of()));
  }
}
