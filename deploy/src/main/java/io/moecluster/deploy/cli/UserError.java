package io.moecluster.deploy.cli;

/**
 * A failure caused by what the user asked for or gave us (a missing file, a bad flag value), as
 * opposed to a bug. moe prints only its message and exits with 2.
 */
public class UserError extends RuntimeException {
  public UserError(String message) {
    super(message);
  }

  public UserError(String message, Throwable cause) {
    super(message, cause);
  }
}
