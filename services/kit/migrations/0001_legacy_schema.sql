-- The legacy PostgreSQL database, as the services read and write it: users and their teams and
-- training groups (users), and sensors (hardware). Applied in order by kit::db::migrate, each once.

CREATE TABLE users (
    id          uuid PRIMARY KEY,
    role        text NOT NULL,
    -- Body mass in kilograms, when the user gave it.
    mass_kg     double precision CHECK (mass_kg > 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE teams_users (
    team_id     uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX teams_users_user ON teams_users (user_id);

CREATE TABLE training_groups_users (
    training_group_id  uuid NOT NULL,
    user_id            uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (training_group_id, user_id)
);
CREATE INDEX training_groups_users_user ON training_groups_users (user_id);

CREATE TABLE sensors (
    mac_address       text PRIMARY KEY CHECK (mac_address ~ '^([0-9a-f]{2}:){5}[0-9a-f]{2}$'),
    firmware_version  text,
    battery_level     double precision CHECK (battery_level BETWEEN 0 AND 1),
    memory_level      double precision CHECK (memory_level BETWEEN 0 AND 1),
    gyro_offset       double precision[] CHECK (cardinality(gyro_offset) = 3),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
