package io.moecluster.deploy.cli;

/** The exit codes of moe, shared by every subcommand so scripts can rely on them. */
public final class ExitCodes {
  public static final int OK = 0;
  /** Something failed at run time: a bug, an I/O error, a crashed node. */
  public static final int FAILURE = 1;
  /** Bad usage or bad input: the user can fix it by changing the command or its files. */
  public static final int USAGE = 2;

  private ExitCodes() {}
}
