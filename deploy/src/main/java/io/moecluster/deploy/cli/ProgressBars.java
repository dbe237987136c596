package io.moecluster.deploy.cli;

import java.io.Console;
import java.io.PrintStream;
import java.util.Locale;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

/**
 * Progress of long operations (loading weights, converting checkpoints) on stderr. On a terminal
 * it is a live bar; otherwise (CI logs, redirected output) one summary line when the work ends,
 * since a redrawn bar would fill a log file with hundreds of lines.
 *
 * <pre>{@code
 * try (ProgressBars.Progress progress = ProgressBars.bytes("loading experts", totalBytes)) {
 *   for (...) { ...; progress.stepTo(loaded); }
 * }
 * }</pre>
 */
public final class ProgressBars {

  /** A running progress display; close it when the work ends, whether or not it succeeded. */
  public interface Progress extends AutoCloseable {
    /** Reports that {@code done} units of the total are complete. */
    void stepTo(long done);

    @Override
    void close();
  }

  private ProgressBars() {}

  /** Progress over {@code totalBytes} bytes, shown in MiB. */
  public static Progress bytes(String task, long totalBytes) {
    if (interactive()) {
      ProgressBar bar =
          new ProgressBarBuilder()
              .setTaskName(task)
              .setInitialMax(totalBytes)
              .setUnit(" MiB", 1L << 20)
              .setStyle(ProgressBarStyle.UNICODE_BLOCK)
              .setUpdateIntervalMillis(200)
              .showSpeed()
              .build(); // the library's default consumer writes to System.err
      return new Progress() {
        @Override
        public void stepTo(long done) {
          bar.stepTo(done);
        }

        @Override
        public void close() {
          bar.close();
        }
      };
    }
    return new SummaryLine(task, totalBytes, System.err, System.nanoTime());
  }

  /**
   * Whether stderr is worth animating. Since JDK 22 System.console() is non-null even when
   * redirected, so ask isTerminal(); it checks stdin and stdout, the best the JDK offers.
   */
  private static boolean interactive() {
    Console console = System.console();
    return console != null && console.isTerminal();
  }

  /** The non-terminal form: remembers the last step and prints one line on close. */
  static final class SummaryLine implements Progress {
    private final String task;
    private final long total;
    private final PrintStream out;
    private final long startNanos;
    private long done;
    private boolean closed;

    SummaryLine(String task, long total, PrintStream out, long startNanos) {
      this.task = task;
      this.total = total;
      this.out = out;
      this.startNanos = startNanos;
    }

    @Override
    public void stepTo(long done) {
      this.done = done;
    }

    @Override
    public void close() {
      if (closed) {
        return;
      }
      closed = true;
      double seconds = (System.nanoTime() - startNanos) / 1e9;
      String amount =
          done >= total ? mib(total) + " MiB" : mib(done) + " of " + mib(total) + " MiB";
      out.printf(
          Locale.ROOT,
          "%s: %s in %.1f s (%.0f MiB/s)%n",
          task,
          amount,
          seconds,
          seconds > 0 ? done / 1048576.0 / seconds : 0.0);
      out.flush();
    }

    private static String mib(long bytes) {
      return String.format(Locale.ROOT, "%.1f", bytes / 1048576.0);
    }
  }
}
