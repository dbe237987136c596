package io.moecluster.expert.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.moecluster.core.model.ExpertWeights;
import io.moecluster.expert.ExpertBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

class MultiDeviceBackendTest {

  /** Answers its own index; counts prefetches and closes. */
  private static final class Device implements ExpertBackend {
    final int index;
    int prefetches;
    boolean closed;

    Device(int index) {
      this.index = index;
    }

    @Override
    public String description() {
      return "cuda:" + index;
    }

    @Override
    public CompletableFuture<float[]> forward(int layer, int expert, ExpertWeights weights, float[] x, int rows) {
      return CompletableFuture.completedFuture(new float[] {index});
    }

    @Override
    public void prefetch(int layer, int expert, ExpertWeights weights) {
      prefetches++;
    }

    @Override
    public void close() {
      closed = true;
      if (index == 0) {
        throw new IllegalStateException("device 0 failed to close");
      }
    }
  }

  @Test
  void expertsSpreadEvenlyAndStayOnTheirDevice() {
    List<Device> devices = List.of(new Device(0), new Device(1), new Device(2));
    MultiDeviceBackend b = new MultiDeviceBackend(devices);
    int[] perDevice = new int[3];
    for (int layer = 0; layer < 8; layer++) {
      for (int expert = 0; expert < 9; expert++) {
        int d = (int) b.forward(layer, expert, null, null, 1).join()[0];
        assertEquals(MultiDeviceBackend.deviceOf(layer, expert, 3), d);
        assertEquals(d, (int) b.forward(layer, expert, null, null, 1).join()[0], "always the same device");
        perDevice[d]++;
      }
    }
    assertEquals(List.of(24, 24, 24), List.of(perDevice[0], perDevice[1], perDevice[2]));
    b.prefetch(0, 0, null);
    assertEquals(1, devices.get(MultiDeviceBackend.deviceOf(0, 0, 3)).prefetches);
    assertEquals("cuda:0, cuda:1, cuda:2", b.description());
  }

  @Test
  void closeClosesEveryDeviceEvenWhenOneFails() {
    List<Device> devices = new ArrayList<>(List.of(new Device(0), new Device(1)));
    var e = assertThrows(IllegalStateException.class, () -> new MultiDeviceBackend(devices).close());
    assertTrue(e.getMessage().contains("device 0"));
    assertTrue(devices.get(0).closed && devices.get(1).closed);
    assertThrows(IllegalArgumentException.class, () -> new MultiDeviceBackend(List.of()));
  }
}
