package io.moecluster.deploy.cluster;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A child JVM of {@code moe local-cluster}: its process, a thread that copies its output (stdout
 * and stderr merged) to ours with every line prefixed by the child's name, and the last lines of
 * that output for error messages when it dies.
 */
public final class ChildProcess {
  private static final int TAIL_LINES = 30;

  private final String name;
  private final Process process;
  private final Deque<String> tail = new ArrayDeque<>();
  private final Thread pump;

  private ChildProcess(String name, Process process, PrintStream log) {
    this.name = name;
    this.process = process;
    this.pump = Thread.ofPlatform().name("log-" + name).daemon().start(() -> copy(log));
  }

  /** Starts {@code command}; its output goes to {@code log}, each line as {@code [name] line}. */
  public static ChildProcess start(String name, List<String> command, PrintStream log) throws IOException {
    ProcessBuilder builder = new ProcessBuilder(command).redirectErrorStream(true);
    return new ChildProcess(name, builder.start(), log);
  }

  private void copy(PrintStream log) {
    try (BufferedReader in =
        new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
      String line;
      while ((line = in.readLine()) != null) {
        synchronized (tail) {
          if (tail.size() == TAIL_LINES) {
            tail.removeFirst();
          }
          tail.addLast(line);
        }
        synchronized (log) {
          log.println("[" + name + "] " + line);
          log.flush();
        }
      }
    } catch (IOException e) {
      // The child is gone; its exit code tells the rest.
    }
  }

  public String name() {
    return name;
  }

  public ProcessHandle handle() {
    return process.toHandle();
  }

  public boolean isAlive() {
    return process.isAlive();
  }

  /** The exit code; only meaningful once the child has exited. */
  public int exitValue() {
    return process.exitValue();
  }

  public Process process() {
    return process;
  }

  /** The child's last lines of output, oldest first. */
  public List<String> tail() {
    synchronized (tail) {
      return new ArrayList<>(tail);
    }
  }

  /**
   * Stops the child: SIGTERM (its orderly shutdown: drain, leave the cluster), then SIGKILL if it
   * is still running after {@code grace}. Returns when it is gone and its output is copied.
   */
  public void stop(Duration grace) {
    try {
      if (process.isAlive()) {
        process.destroy();
        if (!process.waitFor(grace.toMillis(), TimeUnit.MILLISECONDS)) {
          System.err.println("moe: " + name + " did not stop within " + grace.toSeconds() + " s; killing it");
          process.destroyForcibly();
          process.waitFor(10, TimeUnit.SECONDS);
        }
      }
      pump.join(2000);
    } catch (InterruptedException e) {
      process.destroyForcibly();
      Thread.currentThread().interrupt();
    }
  }
}
