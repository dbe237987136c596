package io.moecluster.deploy.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

class ProgressBarsTest {

  @Test
  void summaryLinePrintsOnceOnClose() {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    PrintStream out = new PrintStream(bytes, true, StandardCharsets.UTF_8);
    long total = 3L << 20;
    ProgressBars.Progress progress =
        new ProgressBars.SummaryLine("loading experts", total, out, System.nanoTime());
    progress.stepTo(1L << 20);
    progress.stepTo(total);
    assertEquals("", bytes.toString(StandardCharsets.UTF_8)); // nothing until the end
    progress.close();
    progress.close();
    String text = bytes.toString(StandardCharsets.UTF_8);
    assertTrue(text.startsWith("loading experts: 3.0 MiB in "), text);
    assertEquals(1, text.lines().count(), text);
  }

  @Test
  void summaryLineSaysHowFarAnUnfinishedTaskGot() {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    PrintStream out = new PrintStream(bytes, true, StandardCharsets.UTF_8);
    try (ProgressBars.Progress progress =
        new ProgressBars.SummaryLine("download", 4L << 20, out, System.nanoTime())) {
      progress.stepTo(1L << 20);
    }
    assertTrue(
        bytes.toString(StandardCharsets.UTF_8).startsWith("download: 1.0 of 4.0 MiB in "),
        bytes.toString(StandardCharsets.UTF_8));
  }

  @Test
  void bytesOutsideATerminalDoesNotThrow() {
    try (ProgressBars.Progress progress = ProgressBars.bytes("test", 10)) {
      progress.stepTo(10);
    }
  }
}
