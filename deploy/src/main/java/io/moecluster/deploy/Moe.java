package io.moecluster.deploy;

import io.moecluster.deploy.commands.BenchCommand;
import io.moecluster.deploy.commands.BenchExpertCommand;
import io.moecluster.deploy.commands.BenchLocalCommand;
import io.moecluster.deploy.commands.CertsCommand;
import io.moecluster.deploy.commands.ChaosCommand;
import io.moecluster.deploy.commands.ClientCommand;
import io.moecluster.deploy.commands.DemoCommand;
import io.moecluster.deploy.commands.GenerateCommand;
import io.moecluster.deploy.commands.InitModelCommand;
import io.moecluster.deploy.commands.LocalClusterCommand;
import io.moecluster.deploy.commands.NodeCommand;
import io.moecluster.deploy.commands.ServeCommand;
import io.moecluster.deploy.commands.StatsCommand;

import io.moecluster.deploy.cli.ErrorHandler;
import io.moecluster.deploy.cli.ExitCodes;
import io.moecluster.deploy.cli.Logging;
import io.moecluster.deploy.cli.MoeVersion;
import io.moecluster.deploy.cli.UsageErrorHandler;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.ScopeType;
import picocli.CommandLine.Spec;

/**
 * The {@code moe} command: the entry point of the distribution. Subcommands are registered in the
 * {@code subcommands} list below; adding one is a one-line change there.
 *
 * <p>Exit codes: 0 success, 1 runtime failure, 2 bad usage or bad input.
 */
@Command(
    name = "moe",
    mixinStandardHelpOptions = true,
    versionProvider = MoeVersion.Provider.class,
    description = "Serves Mixture-of-Experts language models from a cluster of JVMs.",
    subcommands = {
      CommandLine.HelpCommand.class,
      VersionCommand.class,
      DemoCommand.class,
      InitModelCommand.class,
      GenerateCommand.class,
      BenchLocalCommand.class,
      ServeCommand.class,
      NodeCommand.class,
      LocalClusterCommand.class,
      ClientCommand.class,
      BenchCommand.class,
      BenchExpertCommand.class,
      StatsCommand.class,
      CertsCommand.class,
      ChaosCommand.class,
    })
public final class Moe implements Runnable {

  @Spec private CommandSpec spec;

  private boolean verbose;

  /** Inherited, so {@code moe --verbose generate} and {@code moe generate --verbose} both work. */
  @Option(
      names = "--verbose",
      scope = ScopeType.INHERIT,
      description = "Log at DEBUG level and print stack traces of errors.")
  void setVerbose(boolean verbose) {
    this.verbose = verbose;
    Logging.setVerbose(verbose);
  }

  public boolean verbose() {
    return verbose;
  }

  /** {@code moe} alone is a usage error: say so and show the subcommands. */
  @Override
  public void run() {
    throw new ParameterException(spec.commandLine(), "Missing subcommand");
  }

  /** The command line with moe's error handling and exit codes; tests and main both use it. */
  public static CommandLine commandLine() {
    CommandLine cli =
        new CommandLine(new Moe())
            .setParameterExceptionHandler(new UsageErrorHandler())
            .setExecutionExceptionHandler(new ErrorHandler());
    addHelpOptions(cli);
    return cli;
  }

  /** Every command, however deep, answers -h/--help (before its required options are checked). */
  private static void addHelpOptions(CommandLine cli) {
    cli.getCommandSpec().mixinStandardHelpOptions(true);
    cli.getSubcommands().values().forEach(Moe::addHelpOptions);
  }

  public static void main(String[] args) {
    int exitCode;
    try {
      exitCode = commandLine().execute(args);
    } catch (OutOfMemoryError e) {
      // picocli hands only Exceptions to the error handler; an Error would end in a bare stack trace.
      System.err.println("moe: out of memory (" + e.getMessage() + "); give the JVM more with MOE_JAVA_OPTS=-Xmx...,"
          + " or ask for less");
      exitCode = ExitCodes.FAILURE;
    } catch (Error e) {
      System.err.println("moe: internal error: " + e);
      exitCode = ExitCodes.FAILURE;
    }
    System.exit(exitCode);
  }
}
