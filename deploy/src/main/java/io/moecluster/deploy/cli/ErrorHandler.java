package io.moecluster.deploy.cli;

import java.io.FileNotFoundException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.lang.reflect.InvocationTargetException;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.NoSuchFileException;
import java.nio.file.NotDirectoryException;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutionException;
import picocli.CommandLine;
import picocli.CommandLine.ParseResult;

/**
 * Turns an exception thrown by a subcommand into one line on stderr and an exit code. User errors
 * (bad input) exit 2 with their message; anything else is an internal error, exit 1, with a hint
 * to rerun with --verbose, which adds the stack trace. Never a bare stack trace by default.
 */
public final class ErrorHandler implements CommandLine.IExecutionExceptionHandler {

  /** Exceptions of core's parsers are user errors by name, so deploy need not list each class. */
  private static final String[] USER_ERROR_SUFFIXES = {
    "ConfigException", "TokenizerException", "SafeTensorsException"
  };

  /** The reason the JDK gives for ENOTDIR, as when a path goes through a regular file. */
  private static final String NOT_A_DIRECTORY = "Not a directory";

  @Override
  public int handleExecutionException(Exception e, CommandLine cmd, ParseResult parseResult) {
    Throwable error = unwrap(e);
    PrintWriter err = cmd.getErr();
    boolean verbose = isVerbose(cmd);
    int exitCode;
    if (isUserError(error)) {
      err.println("moe: " + describe(error));
      exitCode = ExitCodes.USAGE;
    } else {
      err.println("moe: internal error: " + describe(error));
      if (!verbose) {
        err.println("(rerun with --verbose for the stack trace)");
      }
      exitCode = ExitCodes.FAILURE;
    }
    if (verbose) {
      error.printStackTrace(err);
    }
    err.flush();
    return exitCode;
  }

  static boolean isUserError(Throwable error) {
    if (error instanceof IllegalArgumentException
        || error instanceof UserError
        || error instanceof NoSuchFileException
        || error instanceof FileNotFoundException
        || error instanceof AccessDeniedException
        || error instanceof NotDirectoryException
        || error instanceof FileAlreadyExistsException
        || (error instanceof FileSystemException f && NOT_A_DIRECTORY.equals(f.getReason()))) {
      return true;
    }
    for (Class<?> type = error.getClass(); type != null; type = type.getSuperclass()) {
      for (String suffix : USER_ERROR_SUFFIXES) {
        if (type.getSimpleName().endsWith(suffix)) {
          return true;
        }
      }
    }
    return false;
  }

  /** Wrappers from executors and reflection carry nothing the user needs; report the cause. */
  private static Throwable unwrap(Throwable error) {
    while (error.getCause() != null
        && (error instanceof CompletionException
            || error instanceof ExecutionException
            || error instanceof InvocationTargetException
            || error instanceof UncheckedIOException)) {
      error = error.getCause();
    }
    return error;
  }

  /** File-system exceptions carry only the path as their message; say what went wrong. */
  private static String describe(Throwable error) {
    String message = error.getMessage();
    if (error instanceof NoSuchFileException) {
      return "no such file or directory: " + message;
    }
    if (error instanceof AccessDeniedException) {
      return "permission denied: " + message;
    }
    if (error instanceof NotDirectoryException) {
      return "not a directory: " + message;
    }
    if (error instanceof FileAlreadyExistsException) {
      return "a file is in the way, where a directory or a new file should go: " + message;
    }
    if (error instanceof FileSystemException f && NOT_A_DIRECTORY.equals(f.getReason())) {
      return "not a directory: " + f.getFile();
    }
    if (message == null || message.isBlank()) {
      return error.getClass().getName();
    }
    return message;
  }

  /** --verbose is declared on the root command; subcommands inherit it into the same field. */
  private static boolean isVerbose(CommandLine cmd) {
    Object root = cmd.getCommandSpec().root().userObject();
    return root instanceof io.moecluster.deploy.Moe moe && moe.verbose();
  }
}
