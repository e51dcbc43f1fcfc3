DROP TABLE config_version;
DROP TABLE health_check_configs;
DROP TABLE provider_usage_stats;
DROP TABLE provider_validations;
DROP TABLE providers;
