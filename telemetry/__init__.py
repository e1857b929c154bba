"""What every part of the platform shares: settings from the environment, the Kafka topic catalogue, the ClickHouse
client, and the commands that set a deployment up (migrate, prices, topic_admin).
"""

__version__ = "0.1.0"
