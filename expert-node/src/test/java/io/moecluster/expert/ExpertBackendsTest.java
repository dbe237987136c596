package io.moecluster.expert;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.typesafe.config.ConfigFactory;
import io.moecluster.core.kernel.ScalarKernels;
import io.moecluster.core.model.ExpertWeights;
import io.moecluster.expert.ExpertBackendSettings.Choice;
import io.moecluster.expert.ExpertBackends.BackendUnavailableException;
import io.moecluster.expert.cuda.CudaProbe;
import io.moecluster.expert.cuda.MultiDeviceBackend;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

/** Backend selection (auto, cpu, cuda) over probe results, and the settings it reads. */
class ExpertBackendsTest {
  private static final CudaProbe.Result NO_DRIVER =
      new CudaProbe.Result(List.of(), 0, "no NVIDIA driver (libcuda.so.1) could be loaded: test");
  private static final CudaProbe.Device GPU0 = new CudaProbe.Device(0, "Fake GPU", 9, 0, 80L << 30);
  private static final CudaProbe.Device GPU1 = new CudaProbe.Device(1, "Fake GPU", 9, 0, 80L << 30);
  private static final CudaProbe.Result TWO_GPUS = new CudaProbe.Result(List.of(GPU0, GPU1), 12060, null);

  private final CpuExpertBackend cpu = new CpuExpertBackend(new ScalarKernels());
  private final List<String> opened = new ArrayList<>();
  private final List<String> closed = new ArrayList<>();

  /** A stand-in for one device's backend. */
  private final class FakeGpu implements ExpertBackend {
    final CudaProbe.Device device;

    FakeGpu(CudaProbe.Device device) {
      this.device = device;
      opened.add("cuda:" + device.ordinal());
    }

    @Override
    public String description() {
      return device.toString();
    }

    @Override
    public CompletableFuture<float[]> forward(int layer, int expert, ExpertWeights weights, float[] x, int rows) {
      return CompletableFuture.completedFuture(new float[] {device.ordinal()});
    }

    @Override
    public void close() {
      closed.add("cuda:" + device.ordinal());
    }
  }

  /** The merged reference.conf files, without system property overrides (the build pins moe.expert.backend). */
  private static com.typesafe.config.Config reference() {
    return ConfigFactory.parseResources(ExpertBackendsTest.class.getClassLoader(), "reference.conf").resolve();
  }

  private static ExpertBackendSettings settings(Choice choice, List<Integer> devices) {
    return new ExpertBackendSettings(choice, devices, CacheBudget.ofPercent(80), 32L << 20, false);
  }

  @Test
  void theRealProbeOnThisMachineNeverThrowsAndIsStable() {
    CudaProbe.Result first = CudaProbe.probe();
    CudaProbe.Result second = CudaProbe.probe();
    assertSame(first, second, "probed once per JVM");
    if (!first.available()) {
      assertNotNull(first.problem());
      assertFalse(first.problem().isBlank());
    } else {
      assertTrue(first.driverVersion() >= CudaProbe.MIN_DRIVER_VERSION);
    }
  }

  @Test
  void autoWithoutADriverRunsOnTheCpu() {
    ExpertBackend b = ExpertBackends.select(settings(Choice.AUTO, List.of()), NO_DRIVER, cpu, FakeGpu::new, "n");
    assertSame(cpu, b);
    assertTrue(opened.isEmpty());
  }

  @Test
  void cudaWithoutADriverIsAClearStartUpError() {
    var e = assertThrows(BackendUnavailableException.class,
        () -> ExpertBackends.select(settings(Choice.CUDA, List.of()), NO_DRIVER, cpu, FakeGpu::new, "n"));
    assertInstanceOf(IllegalArgumentException.class, e, "a user error: the CLI prints it and exits with code 2");
    assertTrue(e.getMessage().contains("moe.expert.backend = cuda"), e.getMessage());
    assertTrue(e.getMessage().contains("libcuda.so.1"), e.getMessage());
    assertTrue(e.getMessage().contains("--backend cpu"), e.getMessage());
  }

  @Test
  void cudaWithTheRealProbeOnAMachineWithoutAGpuFailsTheSameWay() {
    org.junit.jupiter.api.Assumptions.assumeFalse(CudaProbe.probe().available(), "this machine has a GPU");
    CpuExpertBackend scalar = new CpuExpertBackend(new ScalarKernels());
    var e = assertThrows(BackendUnavailableException.class,
        () -> ExpertBackends.select(settings(Choice.CUDA, List.of()), scalar, Runnable::run, "n"));
    assertTrue(e.getMessage().contains(CudaProbe.probe().problem()), e.getMessage());
    assertSame(scalar, ExpertBackends.select(settings(Choice.AUTO, List.of()), scalar, Runnable::run, "n"));
  }

  @Test
  void cpuNeverLooksForADevice() {
    assertSame(cpu, ExpertBackends.select(settings(Choice.CPU, List.of()), TWO_GPUS, cpu, d -> {
      throw new AssertionError("opened " + d);
    }, "n"));
  }

  @Test
  void autoAndCudaUseEveryDeviceFound() {
    for (Choice c : new Choice[] {Choice.AUTO, Choice.CUDA}) {
      opened.clear();
      ExpertBackend b = ExpertBackends.select(settings(c, List.of()), TWO_GPUS, cpu, FakeGpu::new, "n");
      assertInstanceOf(MultiDeviceBackend.class, b);
      assertEquals(List.of("cuda:0", "cuda:1"), opened);
    }
    ExpertBackend one = ExpertBackends.select(settings(Choice.CUDA, List.of(1)), TWO_GPUS, cpu, FakeGpu::new, "n");
    assertInstanceOf(FakeGpu.class, one);
    assertEquals(1, ((FakeGpu) one).device.ordinal());
  }

  @Test
  void aDeviceThatIsNotThereIsAConfigurationError() {
    var e = assertThrows(IllegalArgumentException.class,
        () -> ExpertBackends.select(settings(Choice.AUTO, List.of(3)), TWO_GPUS, cpu, FakeGpu::new, "n"));
    assertTrue(e.getMessage().contains("device 3"), e.getMessage());
  }

  @Test
  void aDeviceThatFailsToOpenFallsBackUnderAutoAndFailsUnderCuda() {
    ExpertBackends.DeviceOpener failsOnSecond = d -> {
      if (d.ordinal() == 1) {
        throw new IllegalStateException("CUDA_ERROR_UNSUPPORTED_PTX_VERSION");
      }
      return new FakeGpu(d);
    };
    assertSame(cpu, ExpertBackends.select(settings(Choice.AUTO, List.of()), TWO_GPUS, cpu, failsOnSecond, "n"));
    assertEquals(List.of("cuda:0"), closed, "the device opened before the failure is closed again");
    closed.clear();
    var e = assertThrows(BackendUnavailableException.class,
        () -> ExpertBackends.select(settings(Choice.CUDA, List.of()), TWO_GPUS, cpu, failsOnSecond, "n"));
    assertTrue(e.getMessage().contains("CUDA_ERROR_UNSUPPORTED_PTX_VERSION"), e.getMessage());
    assertEquals(List.of("cuda:0"), closed);
  }

  @Test
  void settingsFromConfig() {
    ExpertBackendSettings d = ExpertBackendSettings.fromConfig(reference());
    assertEquals(Choice.AUTO, d.choice(), "reference.conf: auto");
    assertEquals(List.of(), d.devices());
    assertEquals(CacheBudget.ofPercent(80), d.memoryBudget());
    assertEquals(32L << 20, d.stagingBytes());
    assertFalse(d.registerCheckpoint(), "reference.conf: the checkpoint is not pinned unless asked");

    ExpertBackendSettings s = ExpertBackendSettings.fromConfig(ConfigFactory.parseString(
        "moe.expert { backend = CUDA, cuda { devices = [1, 0], memory-budget = 20GiB, staging-buffer = 8MiB,"
            + " register-checkpoint = on } }")
        .withFallback(reference()));
    assertTrue(s.registerCheckpoint());
    assertEquals(Choice.CUDA, s.choice());
    assertEquals(List.of(1, 0), s.devices());
    assertEquals(20L << 30, s.memoryBudget().resolve(1));
    assertEquals(8L << 20, s.stagingBytes());
    assertEquals(1000, ExpertBackendSettings.fromConfig(ConfigFactory.parseString("moe.expert.cuda.memory-budget = \"50%\"")
        .withFallback(reference())).memoryBudget().resolve(2000));
  }

  @Test
  void badSettingsNameTheKey() {
    assertBad("moe.expert.backend = gpu", "auto, cpu or cuda");
    assertBad("moe.expert.cuda.devices = [-1]", "moe.expert.cuda.devices");
    assertBad("moe.expert.cuda.devices = gpu0", "moe.expert.cuda.devices");
    assertBad("moe.expert.cuda.memory-budget = \"150%\"", "moe.expert.cuda.memory-budget");
    assertBad("moe.expert.cuda.memory-budget = lots", "moe.expert.cuda.memory-budget");
    assertBad("moe.expert.cuda.staging-buffer = 1", "staging-buffer");
    assertBad("moe.expert.cuda.register-checkpoint = maybe", "moe.expert.cuda.register-checkpoint");
  }

  private static void assertBad(String hocon, String expected) {
    var e = assertThrows(IllegalArgumentException.class, () -> ExpertBackendSettings.fromConfig(
        ConfigFactory.parseString(hocon).withFallback(reference())));
    assertTrue(e.getMessage().contains(expected), hocon + " -> " + e.getMessage());
  }
}
