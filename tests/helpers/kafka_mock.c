// SPDX-License-Identifier: GPL-2.0-only
/*
 * kafka_mock: librdkafka's mock cluster as a process of its own, for the
 * end-to-end tests (no Kafka broker can be installed here). It speaks the
 * real Kafka protocol over TCP on loopback, so the daemon and an independent
 * client (python3-kafka) talk to it like to any cluster.
 *
 *   kafka_mock [--brokers N] [--topic NAME[:PARTITIONS] ...]
 *
 * Prints "bootstrap HOST:PORT,..." on stdout once listening, then reads one
 * command a line on stdin and answers "ok" or "error ...":
 *
 *   down [ID]              broker ID (default: every broker) disconnects and
 *                          refuses connections
 *   up [ID]                accepts connections again
 *   topic NAME [PARTS]     create a topic
 *   quit                   exit (so does end of input)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static int create_topic(rd_kafka_mock_cluster_t *mc, const char *spec, int brokers)
{
	char name[256], *colon;
	int parts = 1;

	snprintf(name, sizeof(name), "%s", spec);
	colon = strchr(name, ':');
	if (colon) {
		*colon = 0;
		parts = atoi(colon + 1);
	}
	if (parts < 1)
		return -1;
	/* replication factor = every broker: acks=all waits for all of them */
	return rd_kafka_mock_topic_create(mc, name, parts, brokers) ? -1 : 0;
}

int main(int argc, char **argv)
{
	char errstr[512], line[512], arg[256];
	rd_kafka_mock_cluster_t *mc;
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	int brokers = 1;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--brokers") && i + 1 < argc) {
			brokers = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--topic") && i + 1 < argc) {
			i++; /* created below, once the cluster exists */
		} else {
			fprintf(stderr,
				"usage: kafka_mock [--brokers N] [--topic NAME[:PARTS] ...]\n");
			return 2;
		}
	}
	if (brokers < 1 || brokers > 16) {
		fprintf(stderr, "kafka_mock: --brokers 1..16\n");
		return 2;
	}
	/* the mock cluster lives inside a client handle; this one sends nothing */
	conf = rd_kafka_conf_new();
	rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr));
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk) {
		fprintf(stderr, "kafka_mock: %s\n", errstr);
		return 1;
	}
	mc = rd_kafka_mock_cluster_new(rk, brokers);
	if (!mc) {
		fprintf(stderr, "kafka_mock: cannot start the mock cluster\n");
		rd_kafka_destroy(rk);
		return 1;
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--topic") && create_topic(mc, argv[++i], brokers)) {
			fprintf(stderr, "kafka_mock: cannot create topic %s\n", argv[i]);
			return 1;
		} else if (!strcmp(argv[i], "--brokers")) {
			i++;
		}
	}
	printf("bootstrap %s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);

	while (fgets(line, sizeof(line), stdin)) {
		int id = -1, parts = 1, n;

		line[strcspn(line, "\r\n")] = 0;
		if (!strcmp(line, "quit"))
			break;
		if (sscanf(line, "down %d", &id) == 1 || !strcmp(line, "down")) {
			n = rd_kafka_mock_broker_set_down(mc, id);
		} else if (sscanf(line, "up %d", &id) == 1 || !strcmp(line, "up")) {
			n = rd_kafka_mock_broker_set_up(mc, id);
		} else if (sscanf(line, "topic %255s %d", arg, &parts) >= 1) {
			n = rd_kafka_mock_topic_create(mc, arg, parts, brokers);
		} else {
			printf("error unknown command '%s'\n", line);
			fflush(stdout);
			continue;
		}
		if (n)
			printf("error %s\n", rd_kafka_err2str(n));
		else
			printf("ok\n");
		fflush(stdout);
	}
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
