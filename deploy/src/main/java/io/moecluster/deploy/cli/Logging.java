package io.moecluster.deploy.cli;

import ch.qos.logback.classic.Level;
import ch.qos.logback.classic.LoggerContext;
import org.slf4j.LoggerFactory;

/** Run-time logging switches of the moe command; the static configuration is logback.xml. */
public final class Logging {

  private static volatile boolean touched;

  private Logging() {}

  /**
   * Raises io.moecluster to DEBUG, or puts it back to INFO. Does nothing for "not verbose" until
   * it was once verbose, so a plain run does not pay for starting logback before it needs it.
   */
  public static void setVerbose(boolean verbose) {
    if (!verbose && !touched) {
      return;
    }
    touched = true;
    if (LoggerFactory.getILoggerFactory() instanceof LoggerContext context) {
      context.getLogger("io.moecluster").setLevel(verbose ? Level.DEBUG : Level.INFO);
    }
  }
}
