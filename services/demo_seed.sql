-- The --demo sandbox's shop database (services/demo.py seeds it once, in one transaction).
BEGIN;
CREATE TABLE customers (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email       text NOT NULL UNIQUE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE products (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    title       text NOT NULL,
    price       numeric(10,2) NOT NULL CHECK (price >= 0),
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TABLE orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers(id),
    status      text NOT NULL DEFAULT 'new' CHECK (status IN ('new','paid','shipped','cancelled')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE order_items (
    order_id    bigint NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    product_id  bigint NOT NULL REFERENCES products(id),
    quantity    integer NOT NULL CHECK (quantity > 0),
    unit_price  numeric(10,2) NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX orders_customer_idx ON orders (customer_id);

CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;
CREATE TRIGGER customers_touch BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE FUNCTION order_total(p_order bigint) RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(quantity * unit_price), 0) FROM order_items WHERE order_id = p_order
$$;
CREATE VIEW order_totals AS
    SELECT o.id, c.email, o.status, order_total(o.id) AS total, o.created_at
    FROM orders o JOIN customers c ON c.id = o.customer_id;

INSERT INTO customers (email, name)
SELECT format('customer%s@example.com', i), format('Customer %s', i) FROM generate_series(1, 200) i;
INSERT INTO products (sku, title, price, attributes)
SELECT format('SKU-%s', lpad(i::text, 4, '0')), format('Product %s', i), (i % 50) + 0.99,
       jsonb_build_object('color', (ARRAY['red','green','blue'])[1 + i % 3], 'weight_g', 100 + i)
FROM generate_series(1, 100) i;
INSERT INTO orders (customer_id, status)
SELECT 1 + (i % 200), (ARRAY['new','paid','shipped','cancelled'])[1 + i % 4] FROM generate_series(1, 1000) i;
INSERT INTO order_items (order_id, product_id, quantity, unit_price)
SELECT o.id, 1 + ((o.id * 7 + k) % 100), 1 + (k % 3), 9.99 FROM orders o, generate_series(0, 2) k;
COMMIT;
