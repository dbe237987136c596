package io.moecluster.deploy;

import java.io.PrintWriter;
import java.io.StringWriter;
import picocli.CommandLine;

/** One run of the {@code moe} command line in process, with its exit code, stdout and stderr. */
public record MoeRun(int exitCode, String out, String err) {

  /** Runs {@code moe args...}. */
  public static MoeRun of(String... args) {
    return of(Moe.commandLine(), args);
  }

  /** Runs {@code args} on the given command line (e.g. one with an extra test subcommand). */
  public static MoeRun of(CommandLine cli, String... args) {
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    cli.setOut(new PrintWriter(out, true));
    cli.setErr(new PrintWriter(err, true));
    int exitCode = cli.execute(args);
    return new MoeRun(exitCode, out.toString(), err.toString());
  }
}
