"""A minimal PyFlink job for tests/dev/test_stack.py, submitted with `flink run -py` to the stack's cluster: reads a
Kafka topic to its end (Kafka connector jar), maps in Python, writes Parquet (flink-parquet) to s3:// (S3 plugin).
Usage: stack_smoke_job.py BOOTSTRAP TOPIC OUTPUT_URI
"""

import sys

from pyflink.common import Row, Types, WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.connectors.file_system import FileSink
from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer, KafkaSource
from pyflink.datastream.formats.parquet import ParquetBulkWriters
from pyflink.table import DataTypes


def main(bootstrap: str, topic: str, output: str) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(bootstrap)
        .set_topics(topic)
        .set_group_id("stack-smoke")
        .set_starting_offsets(KafkaOffsetsInitializer.earliest())
        .set_bounded(KafkaOffsetsInitializer.latest())  # a bounded job finishes, which finalises its Parquet files
        .set_value_only_deserializer(SimpleStringSchema())
        .build()
    )
    type_info = Types.ROW_NAMED(["value", "length"], [Types.STRING(), Types.INT()])
    row_type = DataTypes.ROW([DataTypes.FIELD("value", DataTypes.STRING()), DataTypes.FIELD("length", DataTypes.INT())])
    rows = env.from_source(source, WatermarkStrategy.no_watermarks(), "kafka").map(lambda v: Row(v, len(v)), output_type=type_info)
    rows.sink_to(FileSink.for_bulk_format(output, ParquetBulkWriters.for_row_type(row_type, utc_timestamp=True)).build())
    env.execute("stack-smoke")


if __name__ == "__main__":
    main(*sys.argv[1:4])
