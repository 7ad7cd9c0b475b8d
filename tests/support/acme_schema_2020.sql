-- SPDX-License-Identifier: Apache-2.0
-- The tables cert_poll reads and writes, as a database created by
-- acme2certifier's wsgi handler in 2020 contains them: five status rows, no
-- orders.profile, and a certificate table with only id, name, cert,
-- cert_raw, error, order_id, csr, poll_identifier and created_at. The other
-- tables of that handler are left out because cert_poll does not use them.
-- NOTE: the account columns of a 2020 database are a guess. This file leaves
-- out eab_kid and status_id, which acme2certifier's update step adds to
-- older databases.
-- Use: sqlite3 acme_srv.db < acme_schema_2020.sql
BEGIN;
CREATE TABLE "status" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(15) UNIQUE NOT NULL);
INSERT INTO status(name) VALUES('invalid');
INSERT INTO status(name) VALUES('pending');
INSERT INTO status(name) VALUES('ready');
INSERT INTO status(name) VALUES('processing');
INSERT INTO status(name) VALUES('valid');
CREATE TABLE "account" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(15) NOT NULL UNIQUE, "alg" varchar(10) NOT NULL, "jwk" TEXT UNIQUE NOT NULL, "contact" TEXT NOT NULL, "created_at" TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL);
CREATE TABLE "orders" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(15) UNIQUE NOT NULL, "notbefore" integer DEFAULT 0, "notafter" integer DEFAULT 0, "identifiers" text NOT NULL, "account_id" integer NOT NULL REFERENCES "account" ("id"), "status_id" integer NOT NULL REFERENCES "status" ("id") DEFAULT 2, "expires" integer NOT NULL, "created_at" TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL);
CREATE TABLE "certificate" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT, "name" varchar(15) NOT NULL UNIQUE, "cert" text, "cert_raw" text, "error" text, "order_id" integer NOT NULL REFERENCES "order" ("id"), "csr" text NOT NULL, "poll_identifier" text, "created_at" TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL);
COMMIT;
