DROP TABLE provider_standing;
