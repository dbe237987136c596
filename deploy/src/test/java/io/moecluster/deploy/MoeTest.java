package io.moecluster.deploy;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.deploy.cli.UserError;
import java.nio.file.NoSuchFileException;
import java.util.concurrent.Callable;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.Command;

class MoeTest {


  private static MoeRun run(CommandLine cli, String... args) {
    return MoeRun.of(cli, args);
  }

  private static MoeRun run(String... args) {
    return MoeRun.of(args);
  }

  /** A subcommand that fails the way it is told, to exercise the error handler. */
  @Command(name = "fail")
  static final class Fail implements Callable<Integer> {
    @CommandLine.Parameters(index = "0")
    String kind;

    @Override
    public Integer call() throws Exception {
      throw switch (kind) {
        case "user" -> new UserError("model directory /nope has no config.json");
        case "argument" -> new IllegalArgumentException("top_p must be in (0, 1], got 2.0");
        case "config" -> new FakeConfigException("config.json: missing hidden_size");
        case "file" -> new NoSuchFileException("/models/missing");
        default -> new IllegalStateException("kv cache slot 3 freed twice");
      };
    }
  }

  /** Stands in for core's ModelConfigException and friends, matched by simple-name suffix. */
  static final class FakeConfigException extends RuntimeException {
    FakeConfigException(String message) {
      super(message);
    }
  }

  private static CommandLine withFail() {
    return Moe.commandLine().addSubcommand(new Fail());
  }

  @Test
  void badOptionExitsTwoWithAMessageOnStderr() {
    MoeRun r = run("--bogus");
    assertEquals(2, r.exitCode());
    assertTrue(r.err().contains("moe: Unknown option: '--bogus'"), r.err());
    assertTrue(r.err().contains("Usage: moe"), r.err());
    assertEquals("", r.out());
  }

  @Test
  void missingSubcommandIsBadUsage() {
    MoeRun r = run();
    assertEquals(2, r.exitCode());
    assertTrue(r.err().contains("Missing subcommand"), r.err());
  }

  @Test
  void unknownSubcommandIsBadUsage() {
    MoeRun r = run("frobnicate");
    assertEquals(2, r.exitCode());
    assertTrue(r.err().contains("frobnicate"), r.err());
  }

  @Test
  void versionPrintsVersionJavaVectorAndProcessors() {
    MoeRun r = run("version");
    assertEquals(0, r.exitCode(), r.err());
    assertTrue(r.out().startsWith("moe "), r.out());
    assertTrue(r.out().contains("java " + Runtime.version()), r.out());
    assertTrue(r.out().contains("vector Species[float"), r.out()); // surefire adds the module
    assertTrue(r.out().contains("processors " + Runtime.getRuntime().availableProcessors()));
  }

  @Test
  void versionWorksOnAPlainCommandLineToo() {
    MoeRun r = run(new CommandLine(new Moe()), "version");
    assertEquals(0, r.exitCode(), r.err());
    assertTrue(r.out().startsWith("moe "), r.out());
  }

  @Test
  void versionOptionAndHelp() {
    MoeRun version = run("--version");
    assertEquals(0, version.exitCode());
    assertTrue(version.out().startsWith("moe "), version.out());
    MoeRun help = run("--help");
    assertEquals(0, help.exitCode());
    assertTrue(help.out().contains("version"), help.out());
  }

  @Test
  void internalErrorPrintsOneLineAndAHintButNoStackTrace() {
    MoeRun r = run(withFail(), "fail", "bug");
    assertEquals(1, r.exitCode());
    assertTrue(r.err().contains("moe: internal error: kv cache slot 3 freed twice"), r.err());
    assertTrue(r.err().contains("--verbose"), r.err());
    assertFalse(r.err().contains("\tat "), r.err());
    assertFalse(r.err().contains("Exception"), r.err());
  }

  @Test
  void verbosePrintsTheStackTraceOnTheRootOrTheSubcommand() {
    for (String[] args :
        new String[][] {{"--verbose", "fail", "bug"}, {"fail", "bug", "--verbose"}}) {
      MoeRun r = run(withFail(), args);
      assertEquals(1, r.exitCode());
      assertTrue(r.err().contains("moe: internal error: kv cache slot 3 freed twice"), r.err());
      assertTrue(r.err().contains("\tat "), r.err());
    }
  }

  @Test
  void userErrorsPrintTheirMessageAndExitTwo() {
    String[][] cases = {
      {"user", "moe: model directory /nope has no config.json"},
      {"argument", "moe: top_p must be in (0, 1], got 2.0"},
      {"config", "moe: config.json: missing hidden_size"},
      {"file", "moe: no such file or directory: /models/missing"},
    };
    for (String[] c : cases) {
      MoeRun r = run(withFail(), "fail", c[0]);
      assertEquals(2, r.exitCode(), c[0]);
      assertEquals(c[1], r.err().strip(), c[0]);
    }
  }
}
