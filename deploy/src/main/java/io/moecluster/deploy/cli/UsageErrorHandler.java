package io.moecluster.deploy.cli;

import java.io.PrintWriter;
import picocli.CommandLine;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.UnmatchedArgumentException;

/**
 * Bad usage (unknown option, missing parameter): the message, the command's synopsis and a pointer
 * to --help on stderr, exit 2. The full help would bury the one line that matters.
 */
public final class UsageErrorHandler implements CommandLine.IParameterExceptionHandler {

  @Override
  public int handleParseException(ParameterException e, String[] args) {
    CommandLine cmd = e.getCommandLine();
    PrintWriter err = cmd.getErr();
    err.println("moe: " + e.getMessage());
    UnmatchedArgumentException.printSuggestions(e, err);
    err.print("Usage: " + cmd.getHelp().synopsis(0).stripLeading());
    err.printf("Try '%s --help' for more information.%n", cmd.getCommandSpec().qualifiedName());
    err.flush();
    return ExitCodes.USAGE;
  }
}
