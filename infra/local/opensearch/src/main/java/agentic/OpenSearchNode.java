package agentic;

import static org.codelibs.opensearch.runner.OpenSearchRunner.newConfigs;

import java.util.concurrent.CountDownLatch;

import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * One OpenSearch node with the k-NN plugin, in this JVM, on 127.0.0.1.
 *
 * Usage: OpenSearchNode DATA_DIR HTTP_PORT
 * Prints "OPENSEARCH_READY http://127.0.0.1:PORT" once the cluster is yellow; stops cleanly on SIGTERM.
 */
public final class OpenSearchNode {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: OpenSearchNode DATA_DIR HTTP_PORT");
            System.exit(2);
        }
        final String basePath = args[0];
        final int httpPort = Integer.parseInt(args[1]);
        final OpenSearchRunner runner = new OpenSearchRunner();
        runner.setMaxHttpPort(-1); // any port the caller picked, not only 9201-9299
        final CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (Exception e) {
                e.printStackTrace();
            }
            stopped.countDown();
        }));
        runner.onBuild((number, settings) -> {
            settings.put("network.host", "127.0.0.1");
            // Another node on this machine (a second home, a test session) must not bind our transport port or
            // join our cluster: any free port of the range, and a cluster name of our own.
            settings.put("transport.port", "19300-19999");
            settings.put("http.cors.enabled", false);
            settings.put("action.auto_create_index", false);
            settings.put("knn.memory.circuit_breaker.limit", "30%");
        }).build(newConfigs()
                .basePath(basePath)
                .numOfNode(1)
                .baseHttpPort(httpPort - 1)
                .clusterName("agentic-local-" + httpPort)
                .disableESLogger()
                .printOnFailure()
                .pluginTypes("org.opensearch.knn.plugin.KNNPlugin"));
        runner.ensureYellow();
        System.out.println("OPENSEARCH_READY http://127.0.0.1:" + httpPort);
        System.out.flush();
        stopped.await();
    }
}
